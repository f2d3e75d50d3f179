"""Local stand-ins for everything the linnaeus recipe fetches.

Two worlds.  make_inputs: small and fast, for the tests of tags, caching and
pushing: a CUDA base without a root filesystem, an apt mirror of small
stand-in .debs under upstream's package names, PyTorch and PyPI indexes of
small wheels with their real dependency shapes, a FlashAttention sdist that a
host "python" turns into a wheel, and a git repository with linnaeus's
pyproject.toml.  make_image_inputs: the build as upstream's Dockerfile does it,
inside the image: a CUDA base that is a real Debian root filesystem (dpkg
database, gcc) with a stand-in nvcc, an apt mirror of real Debian packages
(upstream's list with their dependencies), a torch wheel that ships headers
and a shared library, and a FlashAttention sdist whose build compiles a real
C extension against them in the image."""
import gzip
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile

from imagegen import make_image
from recipes_helpers import (gpg_key, make_apt_repo, make_deb, make_git_repo, make_simple_index,
                             make_wheel, run, sha256, sign_release)

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINNAEUS = ROOT / "recipes" / "linnaeus" / "linnaeus.json"
CUDA_BASE = "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04"
CACHE = pathlib.Path(os.environ.get("KILN_TEST_ROOTFS_DIR", "/var/cache/kiln-test"))
LINNAEUS_DEBS = pathlib.Path(os.environ.get("KILN_TEST_LINNAEUS_DEBS_DIR",
                                            CACHE / "linnaeus-debs"))

# upstream's apt-get install list (tools/docker/Dockerfile), and rclone
UPSTREAM_APT = ["build-essential", "git", "python3.11", "python3.11-dev", "python3.11-venv",
                "python3-pip", "curl", "unzip", "libglib2.0-0", "libsm6", "libxext6",
                "libfontconfig1", "libxrender1", "libgl1-mesa-glx", "rclone"]
UNIVERSE = {"python3.11", "python3.11-dev", "python3.11-venv", "rclone"}

# (torch, torchvision, torchaudio, index path, flash-attn version or None)
TORCH = {"hopper": ("2.8.0.dev20250601+cu128", "0.23.0.dev20250601+cu128",
                    "2.8.0.dev20250601+cu128", "nightly/cu128", "3.0.0b3"),
         "ampere": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "cu126", "2.7.4.post1"),
         "pre-ampere": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "cu126", None)}
TORCH["turing"] = TORCH["pre-ampere"]
# what the indexes hold besides: an older torchvision for an older torch
# (the resolver must not take it), flash-attn releases around the picks
OLDER = {"cu126": ("0.22.0+cu126", "2.7.0+cu126"),
         "nightly/cu128": ("0.23.0.dev20250501+cu128", "2.8.0.dev20250501+cu128")}
FLASH_ATTN_RELEASES = ["2.5.9.post1", "2.7.4.post1", "3.0.0b1", "3.0.0b3"]
BUILD_TOOLS = [("wheel", "0.45.1", []), ("psutil", "6.1.0", []), ("ninja", "1.11.1.3", []),
               ("einops", "0.8.0", [])]


def push_base(kiln, registry, work):
    """A stand-in for the CUDA base (no root filesystem), pushed as
    docker.io's name under the mirror."""
    lay = pathlib.Path(work) / "cuda-base"
    make_image(lay, "base", [{"usr/": ("dir",), "usr/local/": ("dir",),
                              "usr/local/cuda/": ("dir",),
                              "usr/local/cuda/version.json": b'{"cuda":{"version":"12.8.0"}}\n',
                              "usr/bin/": ("dir",),
                              "usr/bin/python3.11": (b"#!/bin/sh\necho stand-in python\n", 0o755),
                              "lib": ("link", "usr/lib")}],
               env=CUDA_ENV)
    kiln.run("copy", "-q", f"oci:{lay}:base", f"{registry.host}/{CUDA_BASE}")
    return lay


CUDA_ENV = ("PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:"
            "/usr/sbin:/usr/bin:/sbin:/bin",
            "CUDA_VERSION=12.8.0", "NVIDIA_VISIBLE_DEVICES=all")


def _sdist(outdir, name, version, files):
    """NAME-VERSION.tar.gz holding files ({path under NAME-VERSION/: bytes})."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    top = f"{name}-{version}"
    path = outdir / f"{top}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for p, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{top}/{p}")
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def _torch_wheels(tw, arch):
    """torch, torchvision and torchaudio for arch's index, with the
    Requires-Dist shapes of the real ones (torchvision pins its torch)."""
    torch, vision, audio, idx, _ = TORCH[arch]
    base = lambda v: v.split("+")[0]
    old_vision, old_torch = OLDER[idx]
    return [make_wheel(tw, "torch", torch, requires=["filelock", "nvidia-cudnn-cu12==9.5.1.17"]),
            make_wheel(tw, "torch", old_torch, requires=["filelock"]),
            make_wheel(tw, "torchvision", vision, requires=[f"torch=={base(torch)}"]),
            make_wheel(tw, "torchvision", old_vision, requires=[f"torch=={base(old_torch)}"]),
            make_wheel(tw, "torchaudio", audio, requires=[f"torch=={base(torch)}"]),
            make_wheel(tw, "nvidia-cudnn-cu12", "9.5.1.17", py="py3", abi="none",
                       plat="manylinux_2_27_x86_64"),
            make_wheel(tw, "filelock", "3.16.1", py="py3", abi="none", plat="any")]


def _pypi_wheels(work, sdists):
    """linnaeus's closure, the build tools, uv and the flash-attn sdists."""
    lw = work / "pw"
    wheels = [make_wheel(lw, name, version, requires=requires, py="py3", abi="none", plat="any",
                         data={"scripts/ninja": b"#!/bin/sh\necho 1.11.1.git.kitware.jobserver-1\n"}
                         if name == "ninja" else None)
              for name, version, requires in BUILD_TOOLS]
    return wheels + linnaeus_closure(work) + list(sdists)


def make_sites(work, arch):
    """Local copies of the sites the recipe reads, laid out as the sites
    are (for --mirror URL-PREFIX=DIR or file:// variables): DIR for
    https://download.pytorch.org/whl, for https://pypi.org and for
    http://archive.ubuntu.com/ubuntu."""
    work = pathlib.Path(work)
    debs = {"main": [], "universe": []}
    for p in UPSTREAM_APT:
        debs["universe" if p in UNIVERSE else "main"].append(
            make_deb(work / "debs", p, {f"usr/share/doc/{p}/stand-in": b"x"}))
    ubuntu = make_apt_repo(work / "archive.ubuntu.com", debs, suite="jammy")
    torch_site = work / "download.pytorch.org"
    make_simple_index(torch_site / TORCH[arch][3], _torch_wheels(work / "tw" / arch, arch))
    sdists = []
    for v in FLASH_ATTN_RELEASES:
        whl = make_wheel(work / "fa-wheels", "flash_attn", v, plat="linux_x86_64")
        sdists.append(_sdist(work / "fa", "flash_attn", v,
                             {"PKG-INFO": f"Name: flash_attn\nVersion: {v}\n".encode(),
                              f"dist/{whl.name}": whl.read_bytes()}))
    pypi_site = work / "pypi.org"
    make_simple_index(pypi_site / "simple", _pypi_wheels(work, sdists))
    return torch_site, pypi_site, ubuntu


def fake_build_python(work, arch):
    """A host "python" for the FlashAttention step on the host: its `-m pip
    wheel ... --wheel-dir DIR` takes the wheel the stand-in sdist carries,
    and notes the arch list and job count it was given in WORK/fa-env."""
    work = pathlib.Path(work)
    fake = work / f"fake-python-{arch}"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --wheel-dir ] && dir=$2; shift; done\n'
                    f'echo "$TORCH_CUDA_ARCH_LIST $MAX_JOBS" > "{work}/fa-env"\n'
                    'mkdir "$KILN_SCRATCH/sdist" && tar -xzf "$KILN_SDIST" -C "$KILN_SCRATCH/sdist"'
                    ' && cp "$KILN_SCRATCH"/sdist/*/dist/*.whl "$dir/"\n')
    fake.chmod(0o755)
    return fake


def make_inputs(work, arch):
    """The --set arguments pointing the recipe at small local stand-ins;
    FlashAttention is "built" on the host (fake_build_python)."""
    work = pathlib.Path(work)
    torch_site, pypi_site, ubuntu = make_sites(work, arch)
    repo = work / "linnaeus"
    if not repo.exists():
        make_git_repo(repo, {"feat/new-model": {"linnaeus/model.py": "M = 1\n"}},
                      main_files={"pyproject.toml": PYPROJECT})
    return {"ubuntu_mirror": f"file://{ubuntu}", "ubuntu_keyring": str(gpg_key().keyring),
            "torch_index": f"file://{torch_site / TORCH[arch][3]}",
            "pypi_index": f"file://{pypi_site / 'simple'}",
            "flash_attn_build_in": "host", "build_python": str(fake_build_python(work, arch)),
            "linnaeus_git": str(repo)}


def build_args(sets, registry, *extra):
    args = ["build", str(LINNAEUS), "--mirror", f"docker.io={registry.host}",
            "--set", f"image_repository={registry.host}/frontierkodiak/linnaeus-dev"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args + list(extra)


# linnaeus's pyproject.toml: upstream's dependency names and a dev extra
PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "linnaeus"
version = "0.1.0"
description = "Hierarchical taxonomic image classification"
requires-python = ">=3.10"
authors = [{ name = "Polli Labs" }]
dependencies = [
    "torch>=2.0",
    "numpy>=1.24",
    "opencv-python>=4.8",
    "pandas>=2.0",
    "matplotlib>=3.7",
    "termcolor>=2.3",
    "rich>=13",
    "polli-typus>=0.1",
    "huggingface-hub>=0.20",
    "python-dateutil>=2.8",
    "pyyaml>=6",
    "tqdm>=4.65",
    'typing-extensions>=4.5; python_version < "3.11"',
]

[project.optional-dependencies]
dev = [
    "pytest>=7",
    "ruff>=0.4",
    "uv",
    'tomli>=2; python_version < "3.11"',
]

[project.scripts]
linnaeus = "linnaeus.main:main"
"""

# A stand-in PyPI for it: the real projects' names and dependency shapes
# (Requires-Dist as their wheels declare them, trimmed), small wheels.
_BIN = {"py": "cp311", "abi": "cp311", "plat": "manylinux_2_17_x86_64"}
PYPI_CLOSURE = [
    ("torch", "2.7.1", ["filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx",
                        "jinja2", "fsspec",
                        'triton==3.3.1; platform_system == "Linux" and platform_machine == "x86_64"'],
     _BIN),
    ("triton", "3.3.1", ["setuptools>=40.8.0"], _BIN),
    ("setuptools", "75.6.0", [], {}),
    ("sympy", "1.13.3", ["mpmath<1.4,>=1.1.0"], {}),
    ("mpmath", "1.3.0", [], {}),
    ("networkx", "3.4.2", [], {}),
    ("jinja2", "3.1.4", ["MarkupSafe>=2.0"], {}),
    ("markupsafe", "3.0.2", [], _BIN),
    ("fsspec", "2024.10.0", [], {}),
    ("filelock", "3.16.1", [], {}),
    ("numpy", "1.26.4", [], _BIN),
    ("numpy", "2.1.3", [], _BIN),
    ("opencv-python", "4.10.0.84", ['numpy>=1.21.2; python_version >= "3.10"',
                                    'numpy>=1.23.5; python_version >= "3.11"'], _BIN),
    ("pandas", "2.2.3", ['numpy>=1.23.2; python_version == "3.11"', "python-dateutil>=2.8.2",
                         "pytz>=2020.1", "tzdata>=2022.7"], _BIN),
    # the newest pandas needs a numpy the index does not have: backtracking
    ("pandas", "3.0.0", ["numpy>=2.4", "python-dateutil>=2.8.2", "tzdata>=2022.7"], _BIN),
    ("pytz", "2024.2", [], {}),
    ("tzdata", "2024.2", [], {}),
    ("python-dateutil", "2.9.0.post0", ["six>=1.5"], {}),
    ("six", "1.16.0", [], {}),
    ("matplotlib", "3.9.2", ["contourpy>=1.0.1", "cycler>=0.10", "fonttools>=4.22.0",
                             "kiwisolver>=1.3.1", "numpy>=1.23", "packaging>=20.0",
                             "pillow>=8", "pyparsing>=2.3.1", "python-dateutil>=2.7"], _BIN),
    ("contourpy", "1.3.1", ["numpy>=1.23"], _BIN),
    ("cycler", "0.12.1", [], {}),
    ("fonttools", "4.55.0", [], _BIN),
    ("kiwisolver", "1.4.7", [], _BIN),
    ("packaging", "24.2", [], {}),
    ("pillow", "11.0.0", [], _BIN),
    ("pyparsing", "3.2.0", [], {}),
    ("termcolor", "2.5.0", [], {}),
    ("rich", "13.9.4", ["markdown-it-py>=2.2.0", "pygments<3.0.0,>=2.13.0",
                        'typing-extensions<5.0,>=4.0.0; python_version < "3.11"'], {}),
    ("markdown-it-py", "3.0.0", ["mdurl~=0.1"], {}),
    ("mdurl", "0.1.2", [], {}),
    ("pygments", "2.18.0", [], {}),
    ("polli-typus", "0.1.4", ["pydantic>=2.0"], {}),
    ("pydantic", "2.9.2", ["annotated-types>=0.6.0", "pydantic-core==2.23.4",
                           "typing-extensions>=4.6.1"], {}),
    ("pydantic-core", "2.23.4", ["typing-extensions!=4.7.0,>=4.6.0"], _BIN),
    ("annotated-types", "0.7.0", [], {}),
    ("typing-extensions", "4.12.2", [], {}),
    ("huggingface-hub", "0.26.2", ["filelock", "fsspec>=2023.5.0", "packaging>=20.9",
                                   "pyyaml>=5.1", "requests", "tqdm>=4.42.1",
                                   "typing-extensions>=3.7.4.3"], {}),
    ("pyyaml", "6.0.2", [], _BIN),
    ("requests", "2.32.3", ["charset-normalizer<4,>=2", "idna<4,>=2.5", "urllib3<3,>=1.21.1",
                            "certifi>=2017.4.17"], {}),
    ("charset-normalizer", "3.4.0", [], _BIN),
    ("idna", "3.10", [], {}),
    ("urllib3", "2.2.3", [], {}),
    ("certifi", "2024.8.30", [], {}),
    ("tqdm", "4.67.1", ['colorama; platform_system == "Windows"'], {}),
    ("colorama", "0.4.6", [], {}),
    ("pytest", "8.3.3", ["iniconfig", "packaging", "pluggy<2,>=1.5",
                         'exceptiongroup>=1.0.0rc8; python_version < "3.11"',
                         'tomli>=1; python_version < "3.11"'], {}),
    ("iniconfig", "2.0.0", [], {}),
    ("pluggy", "1.5.0", [], {}),
    ("exceptiongroup", "1.2.2", [], {}),
    ("tomli", "2.1.0", [], {}),
    ("ruff", "0.7.4", [], {"py": "py3", "abi": "none", "plat": "manylinux_2_17_x86_64"}),
    ("uv", "0.5.11", [], {"py": "py3", "abi": "none", "plat": "manylinux_2_17_x86_64"}),
]


def linnaeus_closure(work):
    """The wheels of linnaeus's dependency closure."""
    work = pathlib.Path(work)
    wheels = []
    for name, version, requires, tags in PYPI_CLOSURE:
        kw = {"py": "py3", "abi": "none", "plat": "any", **tags}
        if name == "uv":   # a binary in the wheel's scripts, as uv's own
            kw["data"] = {"scripts/uv": b"#!/bin/sh\necho uv 0.5.11\n"}
        wheels.append(make_wheel(work / "lw", name, version, requires=requires, **kw))
    return wheels


def make_linnaeus_pypi(work):
    """The stand-in index of linnaeus's dependency closure (PEP 658/714
    metadata offered for all but a few, so both ways are read)."""
    wheels = linnaeus_closure(work)
    with_metadata = {w.name for w in wheels if not w.name.startswith(("rich", "pandas", "six"))}
    return make_simple_index(pathlib.Path(work) / "linnaeus-pypi" / "simple", wheels,
                             metadata=with_metadata)


# ---- the build in the image: real Debian parts, a torch with headers and a
# shared library, a FlashAttention sdist that compiles against them ----

NVCC = r"""#!/bin/sh
# stand-in nvcc: the image's gcc compiles the CUDA source as C; the
# -gencode arch=compute_XX,code=sm_XX options become KILN_NVCC_ARCHS
set -e
archs=; args=; src=; out=
while [ $# -gt 0 ]; do
  case "$1" in
    -gencode) archs="$archs${archs:+;}${2##*code=}"; shift ;;
    --threads|-ccbin|-arch) shift ;;
    -o) out=$2; shift ;;
    -c|-O*|--use_fast_math|-std=*|--expt-*|-lineinfo) ;;
    -I*|-D*|-U*) args="$args $1" ;;
    --version) echo "Cuda compilation tools, release 12.8, V12.8.61 (stand-in)"; exit 0 ;;
    *.cu) src=$1 ;;
    *) echo "nvcc stand-in: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
exec gcc -x c -fPIC -O2 "-DKILN_NVCC_ARCHS=\"$archs\"" $args -c "$src" -o "$out"
"""

TORCH_INIT = '''"""stand-in torch: a version, its CUDA build, and the shared library that
extensions built against it link to"""
import ctypes as _ctypes
import os as _os

from torch import version
__version__ = version.__version__
_lib = _ctypes.CDLL(_os.path.join(_os.path.dirname(__file__), "lib", "libtorch_standin.so"),
                    mode=_ctypes.RTLD_GLOBAL)
from torch import cuda, utils  # noqa: E402,F401
'''

TORCH_CUDA = '''import os


def is_available():
    return os.path.exists("/dev/nvidiactl") and os.path.exists("/dev/nvidia0")


def get_device_capability(device=0):
    raise RuntimeError("stand-in torch has no CUDA runtime")
'''

CPP_EXTENSION = '''import os

_torch = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")


def include_paths(cuda=False):
    return [os.path.join(_torch, "include")]


def library_paths(cuda=False):
    return [os.path.join(_torch, "lib")]
'''

FA_SETUP = '''import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

import torch  # noqa: F401  (the image's own: its headers and library)
from torch.utils import cpp_extension

VERSION = "@VERSION@"
ARCHS = [a.replace(".", "") for a in os.environ.get("TORCH_CUDA_ARCH_LIST", "").split(";") if a]


class NvccBuildExt(build_ext):
    """The kernels through the base's nvcc, as torch's BuildExtension does."""

    def build_extensions(self):
        os.makedirs(self.build_temp, exist_ok=True)
        obj = os.path.join(self.build_temp, "flash_fwd.o")
        cmd = [os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"), "-c", "csrc/flash_fwd.cu",
               "-o", obj, "-O3", "--threads", os.environ.get("MAX_JOBS", "1")]
        for arch in ARCHS:
            cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        cmd += ["-I" + p for p in cpp_extension.include_paths()]
        subprocess.check_call(cmd)
        for e in self.extensions:
            e.extra_objects = [obj]
        super().build_extensions()


setup(name="flash_attn", version=VERSION, packages=["flash_attn"],
      ext_modules=[Extension("flash_attn_2_cuda", ["csrc/flash_api.c"],
                             include_dirs=cpp_extension.include_paths(),
                             library_dirs=cpp_extension.library_paths(),
                             libraries=["torch_standin"])],
      cmdclass={"build_ext": NvccBuildExt})
'''

FA_API = r'''#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <torch/extension.h>

const char *flash_fwd_archs(void);
int flash_fwd_kernel(int x);

static PyObject *fwd(PyObject *self, PyObject *args)
{
        int x;
        (void)self;
        if (!PyArg_ParseTuple(args, "i", &x))
                return NULL;
        return PyLong_FromLong(flash_fwd_kernel(x));
}

static PyObject *archs(PyObject *self, PyObject *unused)
{
        (void)self;
        (void)unused;
        return PyUnicode_FromString(flash_fwd_archs());
}

static PyMethodDef methods[] = {
        {"fwd", fwd, METH_VARARGS, "the forward kernel"},
        {"archs", archs, METH_NOARGS, "the CUDA archs the kernels were compiled for"},
        {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "flash_attn_2_cuda", NULL, -1, methods};

PyMODINIT_FUNC PyInit_flash_attn_2_cuda(void)
{
        /* built against one torch, loaded with another: refuse, as a real
         * extension fails on its first missing symbol */
        if (torch_standin_abi() != TORCH_STANDIN_ABI) {
                PyErr_Format(PyExc_ImportError, "flash_attn_2_cuda was built against torch ABI %d, "
                             "this torch is %d", TORCH_STANDIN_ABI, torch_standin_abi());
                return NULL;
        }
        return PyModule_Create(&module);
}
'''

FA_KERNEL = r'''#include <torch/extension.h>
#ifndef KILN_NVCC_ARCHS
#error "the kernels are compiled by nvcc"
#endif
const char *flash_fwd_archs(void) { return KILN_NVCC_ARCHS; }
int flash_fwd_kernel(int x) { return 2 * x; }
'''

FA_INIT = '''__version__ = "@VERSION@"

import torch  # noqa: F401,E402  (loads torch's library, as the real package does)
from flash_attn.flash_attn_interface import flash_attn_func, flash_attn_varlen_func  # noqa: E402,F401
'''

FA_INTERFACE = '''import flash_attn_2_cuda as flash_attn_cuda


def flash_attn_func(q, k=None, v=None, *args, **kwargs):
    return flash_attn_cuda.fwd(q)


def flash_attn_varlen_func(q, *args, **kwargs):
    return flash_attn_cuda.fwd(q)
'''


def _abi(torch_version):
    major, minor, patch = (int(x) for x in torch_version.split("+")[0].split(".")[:3])
    return major * 10000 + minor * 100 + patch


def _real_torch_wheels(work, arch):
    """torch with headers and a shared library compiled here, torchvision and
    torchaudio that import it, and what torch requires."""
    work = pathlib.Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch, vision, audio, _, _ = TORCH[arch]
    tw = work / "rtw"
    src = work / "libtorch_standin.c"
    src.write_text(f"int torch_standin_abi(void) {{ return {_abi(torch)}; }}\n")
    lib = work / "libtorch_standin.so"
    run("gcc", "-shared", "-fPIC", "-Wl,-soname,libtorch_standin.so", "-o", lib, src)
    header = (f"#define TORCH_STANDIN_ABI {_abi(torch)}\nint torch_standin_abi(void);\n").encode()
    files = {"torch/__init__.py": TORCH_INIT.encode(),
             "torch/version.py": f"__version__ = '{torch}'\ncuda = '{CUDA_OF[arch]}'\n".encode(),
             "torch/cuda/__init__.py": TORCH_CUDA.encode(),
             "torch/utils/__init__.py": b"", "torch/utils/cpp_extension.py": CPP_EXTENSION.encode(),
             "torch/include/torch/extension.h": header,
             "torch/lib/libtorch_standin.so": lib.read_bytes()}
    base = lambda v: v.split("+")[0]
    uses_torch = lambda name, v: {f"{name}/__init__.py": (
        f"import torch  # noqa: F401\n__version__ = '{v}'\n").encode()}
    return [make_wheel(tw, "torch", torch, files, requires=["filelock", "nvidia-cudnn-cu12==9.5.1.17"]),
            make_wheel(tw, "torchvision", vision, uses_torch("torchvision", vision),
                       requires=[f"torch=={base(torch)}"]),
            make_wheel(tw, "torchaudio", audio, uses_torch("torchaudio", audio),
                       requires=[f"torch=={base(torch)}"]),
            make_wheel(tw, "nvidia-cudnn-cu12", "9.5.1.17", py="py3", abi="none",
                       plat="manylinux_2_27_x86_64"),
            make_wheel(tw, "filelock", "3.16.1", py="py3", abi="none", plat="any")]


CUDA_OF = {"hopper": "12.8", "ampere": "12.6", "pre-ampere": "12.6", "turing": "12.6"}


def _host_wheel(outdir, dist):
    """A wheel of the build tools Debian's Python has (setuptools, wheel,
    packaging), made from their installed files: a real setuptools for
    the sdist's setup.py."""
    site = pathlib.Path("/usr/lib/python3/dist-packages")
    info = next(p for p in site.iterdir()
                if p.name.startswith(dist + "-") and p.suffix in (".egg-info", ".dist-info"))
    version = info.name[len(dist) + 1:].rsplit(".", 1)[0].split("-")[0]
    tops = {"setuptools": ["setuptools", "pkg_resources", "_distutils_hack",
                           "distutils-precedence.pth"],
            "wheel": ["wheel"], "packaging": ["packaging"]}[dist]
    files = {}
    for top in tops:
        p = site / top
        if p.is_file():
            files[top] = p.read_bytes()
            continue
        for f in sorted(p.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                files[str(f.relative_to(site))] = f.read_bytes()
    eps = info / "entry_points.txt"   # setuptools finds its own commands there
    return make_wheel(outdir, dist, version, files, py="py3", abi="none", plat="any",
                      entry_points=eps.read_text() if eps.exists() else None)


def _real_flash_attn_sdists(work):
    out = []
    for v in FLASH_ATTN_RELEASES:
        sub = lambda t: t.replace("@VERSION@", v).encode()
        out.append(_sdist(pathlib.Path(work) / "rfa", "flash_attn", v, {
            "PKG-INFO": f"Metadata-Version: 2.1\nName: flash_attn\nVersion: {v}\n".encode(),
            "setup.py": sub(FA_SETUP), "flash_attn/__init__.py": sub(FA_INIT),
            "flash_attn/flash_attn_interface.py": FA_INTERFACE.encode(),
            "csrc/flash_api.c": FA_API.encode(), "csrc/flash_fwd.cu": FA_KERNEL.encode()}))
    return out


def push_image_base(kiln, registry, work):
    """The CUDA base as a real root filesystem: Debian 12 with gcc and its
    dpkg database (scripts/setup.sh makes it with mmdebstrap), and a
    /usr/local/cuda whose nvcc is the stand-in above."""
    work = pathlib.Path(work)
    rootfs = CACHE / "bookworm-gcc.tar"
    assert rootfs.is_file(), f"{rootfs} is missing: run scripts/setup.sh"
    cuda = work / "cuda"
    (cuda / "bin").mkdir(parents=True, exist_ok=True)
    (cuda / "include").mkdir(exist_ok=True)
    (cuda / "bin" / "nvcc").write_text(NVCC)
    (cuda / "bin" / "nvcc").chmod(0o755)
    (cuda / "version.json").write_text('{"cuda": {"version": "12.8.0"}}\n')
    (cuda / "include" / "cuda_runtime_api.h").write_text("#define CUDART_VERSION 12080\n")
    lay = work / "cuda-image-base"
    env = {"SOURCE_DATE_EPOCH": "0"}
    kiln.run("append", "scratch", "--layer", f"{rootfs}:/", "--layer", f"{cuda}:/usr/local/cuda",
             "-t", f"oci:{lay}:l", "--cache", work / "base-cache", env=env)
    args = ["config", f"oci:{lay}:l", "-t", f"oci:{lay}:base"]
    for e in CUDA_ENV:
        args += ["--env", e]
    kiln.run(*args, "--cmd", "/bin/bash", env=env)
    kiln.run("copy", "-q", f"oci:{lay}:base", f"{registry.host}/{CUDA_BASE}")
    return lay


def image_apt_mirror(work):
    """upstream's apt set as real Debian packages (scripts/setup.sh fetched
    them) behind dpkg-scanpackages' index: jammy main, and an empty universe."""
    debs = sorted(LINNAEUS_DEBS.glob("*.deb"))
    assert debs and (LINNAEUS_DEBS / ".complete").exists(), \
        f"no .debs under {LINNAEUS_DEBS}: run scripts/setup.sh"
    m = pathlib.Path(work) / "ubuntu-real"
    pool = m / "pool" / "main"
    pool.mkdir(parents=True, exist_ok=True)
    for d in debs:
        if not (pool / d.name).exists():
            shutil.copyfile(d, pool / d.name)
    for comp in ("main", "universe"):
        (m / "dists/jammy" / comp / "binary-amd64").mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=m, check=True,
                       capture_output=True)
    (m / "dists/jammy/main/binary-amd64/Packages").write_bytes(p.stdout)
    (m / "dists/jammy/universe/binary-amd64/Packages").write_bytes(b"")
    sign_release(m / "dists/jammy", gpg_key())
    return m


def make_image_inputs(work, arch):
    """The --set arguments for the build in the image: real Debian packages,
    the in-image FlashAttention build (the recipe's default), a torch that
    extensions compile against."""
    work = pathlib.Path(work)
    torch_site = work / "download.pytorch.org"
    make_simple_index(torch_site / TORCH[arch][3], _real_torch_wheels(work / "torch" / arch, arch))
    real = {w.name.split("-")[0]: w for w in
            (_host_wheel(work / "host-wheels", d) for d in ("setuptools", "wheel", "packaging"))}
    wheels = [w for w in _pypi_wheels(work, _real_flash_attn_sdists(work))
              if w.name.split("-")[0] not in real] + list(real.values())
    pypi_site = work / "pypi.org"
    if not (pypi_site / "simple").exists():
        make_simple_index(pypi_site / "simple", wheels)
    repo = work / "linnaeus"
    if not repo.exists():
        make_git_repo(repo, {"feat/new-model": {"linnaeus/model.py": "M = 1\n"}},
                      main_files={"pyproject.toml": PYPROJECT})
    return {"ubuntu_mirror": f"file://{image_apt_mirror(work)}",
            "ubuntu_keyring": str(gpg_key().keyring),
            "torch_index": f"file://{torch_site / TORCH[arch][3]}",
            "pypi_index": f"file://{pypi_site / 'simple'}", "linnaeus_git": str(repo)}
