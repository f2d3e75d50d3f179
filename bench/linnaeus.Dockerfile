# What recipes/linnaeus/linnaeus.json builds, as a Dockerfile, for
# bench/build.sh (buildah bud --isolation chroot --layers).  The context
# (bench/linnaeus_inputs.py context) holds the files kiln read: one folder per
# recipe layer with the .debs kiln's system layer installed and the wheels
# and sdist `kiln lock` lists, and src/, the linnaeus work tree.  They are
# bind-mounted into the RUN steps, so that the image holds what kiln's holds
# and not the packages as well.
#
# Where it differs from kiln's layers (bench/build.sh prints this too):
# - the .debs are unpacked by dpkg --unpack, which runs the preinst scripts
#   (kiln's debs layer runs none), with --force-depends because one dpkg run
#   does not configure Pre-Depends first; dpkg --configure -a then does what
#   kiln's system/configure layer does, and dpkg's logs and -old backups,
#   which kiln leaves out of that layer, stay;
# - pip writes INSTALLER "pip", REQUESTED and direct_url.json where kiln
#   writes INSTALLER "kiln"; neither compiles .pyc files (--no-compile);
# - linnaeus is installed editable by pip and setuptools (PEP 660), after
#   the source, as a Dockerfile must; kiln writes the same .pth and
#   dist-info below the source from pyproject.toml.
ARG BASE
FROM ${BASE}
ARG CUDA_ARCH_LIST="8.0;8.6"
ARG MAX_JOBS=12
ARG ARCH=ampere
# (--ignore-installed: Debian's python3-setuptools and python3-wheel, which
# python3-pip depends on, do not keep the wheels out of /usr/local, as in kiln)
ARG PIP="env PYTHONDONTWRITEBYTECODE=1 python3.11 -m pip install --no-deps --no-index --no-compile --ignore-installed --break-system-packages --root-user-action=ignore --disable-pip-version-check --no-cache-dir --quiet"

# system: upstream's apt list with its dependencies beyond the base
RUN --mount=type=bind,source=system,target=/tmp/ctx \
    dpkg --unpack --force-depends /tmp/ctx/*.deb > /dev/null
# system/configure: the maintainer scripts and triggers
RUN DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true dpkg --configure -a > /dev/null
# python-links
RUN ln -sf python3.11 /usr/bin/python3 && ln -sf python3 /usr/bin/python
# torch: torch, torchvision, torchaudio and what torch requires
RUN --mount=type=bind,source=torch,target=/tmp/ctx $PIP /tmp/ctx/*.whl
# build-tools
RUN --mount=type=bind,source=build-tools,target=/tmp/ctx $PIP /tmp/ctx/*.whl
# flash-attn: compiled in the image against its torch by the base's nvcc
RUN --mount=type=bind,source=flash-attn,target=/tmp/ctx \
    set -e; out=$(mktemp -d); \
    TORCH_CUDA_ARCH_LIST="$CUDA_ARCH_LIST" MAX_JOBS="$MAX_JOBS" FLASH_ATTENTION_FORCE_BUILD=TRUE \
    PYTHONDONTWRITEBYTECODE=1 python3.11 -m pip wheel --no-deps --no-build-isolation --no-index \
        --disable-pip-version-check --no-cache-dir --quiet --wheel-dir "$out" /tmp/ctx/*.tar.gz; \
    $PIP "$out"/*.whl; rm -rf "$out"
# python-deps: the dependencies of pip install -e .[dev]
RUN --mount=type=bind,source=python-deps,target=/tmp/ctx $PIP /tmp/ctx/*.whl
# linnaeus: the source, installed editable
COPY src /app/linnaeus
RUN cd /app/linnaeus && $PIP --no-build-isolation -e . && \
    rm -rf /app/linnaeus/build /app/linnaeus/*.egg-info

ENV DEBIAN_FRONTEND=noninteractive TZ=Etc/UTC PATH=/root/.local/bin:$PATH \
    PYTHONPATH=/app/linnaeus: PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=$CUDA_ARCH_LIST \
    LINNAEUS_IMAGE_ARCH=$ARCH
LABEL org.opencontainers.image.title=linnaeus-dev ai.polli.linnaeus.arch=$ARCH
WORKDIR /app/linnaeus
CMD ["/bin/bash"]
