"""Local stand-ins for everything the linnaeus recipe fetches: a small CUDA
base image in the test registry, apt mirrors with small .debs, PyTorch and
PyPI indexes with small wheels, a host "python" whose pip wheel drops a
flash-attn wheel, and a git repository with main and a feature branch."""
import json
import pathlib
import subprocess

from imagegen import make_image
from recipes_helpers import (make_apt_repo, make_deb, make_git_repo, make_simple_index,
                             make_wheel, sha256)

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINNAEUS = ROOT / "recipes" / "linnaeus" / "linnaeus.json"
CUDA_BASE = "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04"

DEBS = {
    "deadsnakes": ["python3.11", "python3.11-minimal", "libpython3.11-minimal",
                   "libpython3.11-stdlib", "libpython3.11", "python3.11-dev", "libpython3.11-dev",
                   "python3.11-venv", "python3.11-distutils", "python3.11-lib2to3"],
    "ubuntu": ["libgl1", "libglvnd0", "libglx0", "libglx-mesa0", "libglib2.0-0", "libgomp1",
               "libsm6", "libxext6", "libxrender1", "libhdf5-103"],
}

TORCH = {"hopper": ("2.8.0.dev20250601+cu128", "0.23.0.dev20250601+cu128",
                    "2.8.0.dev20250601+cu128", "nightly/cu128", "3.0.0b3"),
         "ampere": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "cu126", "2.7.4.post1"),
         "pre-ampere": ("2.7.1+cu126", "0.22.1+cu126", "2.7.1+cu126", "cu126", None)}


def push_base(kiln, registry, work):
    """A stand-in for the CUDA base, pushed as docker.io's name under the mirror."""
    lay = pathlib.Path(work) / "cuda-base"
    make_image(lay, "base", [{"usr/": ("dir",), "usr/local/": ("dir",),
                              "usr/local/cuda/": ("dir",),
                              "usr/local/cuda/version.json": b'{"cuda":{"version":"12.8.0"}}\n',
                              "usr/bin/": ("dir",),
                              "usr/bin/python3.11": (b"#!/bin/sh\necho stand-in python\n", 0o755),
                              "lib": ("link", "usr/lib")}],
               env=("PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "CUDA_VERSION=12.8.0", "NVIDIA_VISIBLE_DEVICES=all"))
    kiln.run("copy", "-q", f"oci:{lay}:base", f"{registry.host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04")
    return lay


def make_inputs(work, arch):
    """The --set arguments pointing the recipe at local stand-ins."""
    work = pathlib.Path(work)
    mirrors = {}
    for name, pkgs in DEBS.items():
        debs = [make_deb(work / "debs" / name, p, {f"usr/share/doc/{p}/stand-in": b"x"})
                for p in pkgs]
        mirrors[name] = make_apt_repo(work / "mirrors" / name, debs)
    torch, vision, audio, idx, fa = TORCH[arch]
    tw = work / "tw" / arch
    torch_ws = [make_wheel(tw, "torch", torch), make_wheel(tw, "torchvision", vision),
                make_wheel(tw, "torchaudio", audio),
                make_wheel(tw, "nvidia-cudnn-cu12", "9.5.1.17", py="py3", abi="none",
                           plat="manylinux_2_27_x86_64")]
    torch_idx = make_simple_index(work / "torch-index" / arch / idx / "simple", torch_ws)
    pypi_ws = [make_wheel(work / "pw", "numpy", "1.26.4"),
               make_wheel(work / "pw", "tqdm", "4.66.4", py="py3", abi="none", plat="any",
                          entry_points="[console_scripts]\ntqdm = tqdm.cli:main\n")]
    pypi = make_simple_index(work / "pypi" / "simple", pypi_ws)
    treq = work / "torch-requirements.txt"
    treq.write_text("nvidia-cudnn-cu12==9.5.1.17\n")
    req = work / "requirements.txt"
    req.write_text("numpy==1.26.4\ntqdm==4.66.4 --hash=sha256:%s\n" % sha256(pypi_ws[1]))
    fa_wheel = make_wheel(work / "fa" / arch, "flash_attn", fa or "0")
    fake_py = work / f"fake-python-{arch}"
    fake_py.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --wheel-dir ] && dir=$2; shift; done\n'
                       f'cp "{fa_wheel}" "$dir/"\n')
    fake_py.chmod(0o755)
    repo = work / "linnaeus"
    if not repo.exists():
        make_git_repo(repo, {"feat/new-model": {"linnaeus/model.py": "M = 1\n"}},
                      main_files={"pyproject.toml": PYPROJECT})
    return {"deadsnakes_mirror": f"file://{mirrors['deadsnakes']}",
            "ubuntu_mirror": f"file://{mirrors['ubuntu']}",
            "torch_index": f"file://{torch_idx}", "pypi_index": f"file://{pypi}",
            "python_requirements": str(req), "torch_requirements": str(treq),
            "build_python": str(fake_py),
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
]


def make_linnaeus_pypi(work):
    """The stand-in index of linnaeus's dependency closure (PEP 658/714
    metadata offered for all but a few, so both ways are read)."""
    work = pathlib.Path(work)
    wheels = []
    for name, version, requires, tags in PYPI_CLOSURE:
        kw = {"py": "py3", "abi": "none", "plat": "any", **tags}
        wheels.append(make_wheel(work / "lw", name, version, requires=requires, **kw))
    with_metadata = {w.name for w in wheels if not w.name.startswith(("rich", "pandas", "six"))}
    return make_simple_index(work / "linnaeus-pypi" / "simple", wheels, metadata=with_metadata)
