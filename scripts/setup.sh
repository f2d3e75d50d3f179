#!/usr/bin/env bash
# Installs what kiln needs to build and test, from Debian's packages.
set -euo pipefail
pkgs=(
  build-essential meson ninja-build pkg-config clang
  libarchive-dev libssl-dev libcurl4-openssl-dev libjansson-dev libzstd-dev zlib1g-dev
  libdeflate-dev libcmocka-dev
  python3 python3-pytest python3-jsonschema python3-packaging python3-pip
  docker-registry skopeo umoci oci-image-tool golang-github-opencontainers-image-spec-dev
  apache2-utils openssl git zstd pigz dpkg-dev bc time
  mmdebstrap podman runc buildah uidmap
  gpgv gpg
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A real Debian root filesystem for the sandbox tests (tests/integration/
# test_sandbox.py): made once per machine from Debian's mirror, the way apt
# fetches packages.  KILN_TEST_ROOTFS_DIR moves it; the tests skip nothing
# when it is there and make their own busybox fallback otherwise.
rootfs_dir="${KILN_TEST_ROOTFS_DIR:-/var/cache/kiln-test}"
if [ ! -s "$rootfs_dir/bookworm-gcc.tar" ] && command -v mmdebstrap >/dev/null; then
  mkdir -p "$rootfs_dir"
  if mmdebstrap --quiet --format=tar --variant=minbase --include=gcc,libc6-dev bookworm \
      "$rootfs_dir/bookworm-gcc.tar.tmp"; then
    mv "$rootfs_dir/bookworm-gcc.tar.tmp" "$rootfs_dir/bookworm-gcc.tar"
  else
    rm -f "$rootfs_dir/bookworm-gcc.tar.tmp"
    echo "setup: mmdebstrap failed; the sandbox tests will say so" >&2
  fi
fi
# Real Debian packages for the dpkg database tests (tests/integration/
# test_recipes_dpkg.py): fetched the way apt fetches them, kept here; jq and
# curl with the dependencies a bookworm minbase root lacks.
debs_dir="${KILN_TEST_DEBS_DIR:-/var/cache/kiln-test/debs}"
if ! ls "$debs_dir"/jq_*.deb "$debs_dir"/curl_*.deb >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO mkdir -p "$debs_dir"
  (cd "$debs_dir" && $SUDO apt-get download -q jq libjq1 libonig5 curl libcurl4 libbrotli1 \
      libsasl2-modules-db libsasl2-2 libldap-2.5-0 libnghttp2-14 libpsl5 librtmp1 libssh2-1) ||
    echo "setup: apt-get download failed; the dpkg database tests will say so" >&2
fi
# Real Debian packages for the linnaeus image's apt set (upstream's
# tools/docker/Dockerfile installs these from Ubuntu; Debian 12 has the same
# names): the closure of Depends and Pre-Depends, less what the bookworm root
# above already has, so a test mirror on 127.0.0.1 serves what apt would
# fetch.  About 140 MB, fetched once per machine.
linnaeus_debs_dir="${KILN_TEST_LINNAEUS_DEBS_DIR:-/var/cache/kiln-test/linnaeus-debs}"
linnaeus_apt="build-essential git python3.11 python3.11-dev python3.11-venv python3-pip curl unzip
  libglib2.0-0 libsm6 libxext6 libfontconfig1 libxrender1 libgl1-mesa-glx rclone"
if [ "$(cat "$linnaeus_debs_dir/.complete" 2>/dev/null)" != "$(echo $linnaeus_apt)" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO mkdir -p "$linnaeus_debs_dir"
  have=$(mktemp)
  if [ -s "$rootfs_dir/bookworm-gcc.tar" ]; then
    tar -xOf "$rootfs_dir/bookworm-gcc.tar" ./var/lib/dpkg/status | awk '/^Package:/ {print $2}' |
      sort -u >"$have"
  fi
  # shellcheck disable=SC2086 # the list is words
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances $linnaeus_apt | grep '^[a-z0-9]' | sort -u |
    comm -23 - "$have" >"$have.need"
  if (cd "$linnaeus_debs_dir" && xargs $SUDO apt-get download -q <"$have.need" >/dev/null); then
    echo $linnaeus_apt | $SUDO tee "$linnaeus_debs_dir/.complete" >/dev/null
  else
    echo "setup: apt-get download of the linnaeus apt set failed; the linnaeus tests will say so" >&2
  fi
  rm -f "$have" "$have.need"
fi
# A system user with subordinate ids (/etc/subuid, /etc/subgid), for the
# sandbox tests of the subordinate mapping (newuidmap and newgidmap come
# with podman's uidmap dependency).  KILN_TEST_SUBID_USER names another.
subid_user="${KILN_TEST_SUBID_USER:-kiln-subid}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! id "$subid_user" >/dev/null 2>&1; then
  $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin "$subid_user"
fi
if ! grep -q "^$subid_user:" /etc/subuid 2>/dev/null || ! grep -q "^$subid_user:" /etc/subgid 2>/dev/null; then
  $SUDO touch /etc/subuid /etc/subgid
  $SUDO usermod --add-subuids 1000000-1065535 --add-subgids 1000000-1065535 "$subid_user"
fi
