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
                make_wheel(tw, "torchaudio", audio)]
    torch_idx = make_simple_index(work / "torch-index" / arch / idx / "simple", torch_ws)
    pypi_ws = [make_wheel(work / "pw", "numpy", "1.26.4"),
               make_wheel(work / "pw", "tqdm", "4.66.4", py="py3", abi="none", plat="any",
                          entry_points="[console_scripts]\ntqdm = tqdm.cli:main\n")]
    pypi = make_simple_index(work / "pypi" / "simple", pypi_ws)
    req = work / "requirements.txt"
    req.write_text("numpy==1.26.4\ntqdm==4.66.4 --hash=sha256:%s\n" % sha256(pypi_ws[1]))
    fa_wheel = make_wheel(work / "fa" / arch, "flash_attn", fa or "0")
    fake_py = work / f"fake-python-{arch}"
    fake_py.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --wheel-dir ] && dir=$2; shift; done\n'
                       f'cp "{fa_wheel}" "$dir/"\n')
    fake_py.chmod(0o755)
    repo = work / "linnaeus"
    if not repo.exists():
        make_git_repo(repo, {"feat/new-model": {"linnaeus/model.py": "M = 1\n"}})
    return {"deadsnakes_mirror": f"file://{mirrors['deadsnakes']}",
            "ubuntu_mirror": f"file://{mirrors['ubuntu']}",
            "torch_index": f"file://{torch_idx}", "pypi_index": f"file://{pypi}",
            "python_requirements": str(req), "build_python": str(fake_py),
            "linnaeus_git": str(repo)}


def build_args(sets, registry, *extra):
    args = ["build", str(LINNAEUS), "--mirror", f"docker.io={registry.host}",
            "--set", f"image_repository={registry.host}/frontierkodiak/linnaeus-dev"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args + list(extra)
