"""The shipped linnaeus recipe built as upstream's Dockerfile builds it:
upstream's apt list from real Debian packages resolved against the base's
own dpkg database, FlashAttention compiled *inside the image* against the
image's torch by the base's nvcc, linnaeus installed editable with its
pyproject's closure; then the image is run, by kiln and by podman.

The CUDA base is a real Debian 12 root filesystem (scripts/setup.sh makes it
with mmdebstrap) with a stand-in nvcc (the image's gcc behind a wrapper);
torch is a stand-in wheel shipping headers and a shared library compiled
here; FlashAttention is a stand-in sdist whose setup.py compiles a real C
extension (linnaeus_standins.py)."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import run
from linnaeus_standins import (CUDA_BASE, TORCH, build_args, make_image_inputs,
                               push_image_base)
from registry_util import Registry

PROBE = """
import sys
import torch, torchvision, torchaudio
print("torch", torch.__version__, torch.version.cuda, torchvision.__version__, torchaudio.__version__)
try:
    import flash_attn, flash_attn_2_cuda
except ImportError as e:
    print("flash_attn none", e)
else:
    from flash_attn import flash_attn_func, flash_attn_varlen_func
    print("flash_attn", flash_attn.__version__, flash_attn_2_cuda.archs(), flash_attn_func(21))
import linnaeus
print("linnaeus", linnaeus.__file__)
"""


@pytest.fixture(scope="module")
def world(kiln):
    work = pathlib.Path(tempfile.mkdtemp(prefix="kiln-linnaeus-image-"))
    reg = Registry(work / "registry")
    try:
        push_image_base(kiln, reg, work)
        yield work, reg
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


_BUILT = {}


def built(kiln, world, arch):
    """arch built once into oci:WORK/out (a shared cache, as a builder's)."""
    if arch not in _BUILT:
        work, reg = world
        sets = make_image_inputs(work / "inputs", arch)
        args = build_args(sets, reg, "--arch", arch, "--output", f"oci:{work}/out",
                          "--cache", work / "cache", "--json")
        res = json.loads(kiln.run(*args, timeout=1200).stdout)
        _BUILT[arch] = (args, res, f"oci:{work}/out:{res['tags'][0].rsplit(':', 1)[1]}")
    return _BUILT[arch]


def in_image(kiln, place, *cmd):
    return kiln.run("run", place, "--", *cmd, timeout=600).stdout


def probe(kiln, place):
    out = {}
    for line in in_image(kiln, place, "python", "-c", PROBE).splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def test_ampere_compiles_flash_attn_in_the_image(kiln, world):
    args, res, place = built(kiln, world, "ampere")
    names = [l["name"] for l in res["layers"]]
    assert names == ["system", "system/configure", "python-links", "torch", "build-tools",
                     "flash-attn", "python-deps", "linnaeus"]
    got = probe(kiln, place)
    torch, vision, audio, _, fa = TORCH["ampere"]
    assert got["torch"] == f"{torch} 12.6 {vision} {audio}"
    # the sdist the requirement resolves to, compiled by the base's nvcc for
    # the profile's arch list, loading against the image's own torch
    assert got["flash_attn"] == f"{fa} sm_80;sm_86 42"
    assert got["linnaeus"] == "/app/linnaeus/linnaeus/__init__.py"
    log = next((pathlib.Path(world[0]) / "cache" / "logs").glob("flash-attn-*.log")).read_text()
    # built from the sdist unpacked in a fixed directory, by the image's own pip
    assert "Processing ./src" in log and "Successfully built flash-attn" in log


def test_the_image_has_what_upstream_installs(kiln, world):
    _, _, place = built(kiln, world, "ampere")
    out = in_image(kiln, place, "sh", "-c",
                   "set -e; readlink /usr/bin/python3 /usr/bin/python; python --version;"
                   " git --version; pip3 --version >/dev/null; uv; ninja --version;"
                   " rclone --version | head -1; unzip -v | head -1 >/dev/null;"
                   " curl --version >/dev/null; python3.11 -m venv /tmp/v && /tmp/v/bin/python -c"
                   " 'import ssl, sqlite3'; echo '#include <Python.h>' | g++ -x c++ -fsyntax-only"
                   " -I/usr/include/python3.11 -; echo pwd=$(pwd) pp=$PYTHONPATH")
    lines = out.splitlines()
    assert lines[:3] == ["python3.11", "python3", "Python 3.11.2"]
    assert lines[3].startswith("git version ") and lines[4].startswith("uv ")
    assert lines[6].startswith("rclone v")
    assert lines[-1] == "pwd=/app/linnaeus pp=/app/linnaeus:"
    # dpkg knows what the system layer installed, and apt is content
    dpkg = in_image(kiln, place, "sh", "-c", "dpkg -s python3.11 libgl1-mesa-glx | grep ^Status;"
                    " apt-get check -q >/dev/null && echo apt-ok")
    # the maintainer scripts ran (the system/configure layer): installed, not unpacked
    assert dpkg.count("Status: install ok installed") == 2 and "apt-ok" in dpkg
    audit = in_image(kiln, place, "sh", "-c", "dpkg --audit; ldconfig -p | grep -c libGL.so.1")
    assert audit.strip() == "1", audit
    # pip install -e .[dev]: linnaeus is an editable install pip knows
    pip = in_image(kiln, place, "python", "-m", "pip", "show", "linnaeus")
    assert "Version: 0.1.0" in pip and "/app/linnaeus" in pip


def test_turing_has_no_flash_attn_and_hopper_has_v3(kiln, world):
    _, res, place = built(kiln, world, "turing")
    assert "flash-attn" not in [l["name"] for l in res["layers"]]
    got = probe(kiln, place)
    assert got["flash_attn"].startswith("none No module named 'flash_attn")
    assert got["torch"].split()[0] == TORCH["turing"][0]
    _, res, place = built(kiln, world, "hopper")
    got = probe(kiln, place)
    assert got["flash_attn"] == f"{TORCH['hopper'][4]} sm_90 42"
    assert got["torch"].split()[:2] == [TORCH["hopper"][0], "12.8"]


def test_rebuild_is_a_cache_hit_with_the_same_digest(kiln, world):
    args, res, _ = built(kiln, world, "ampere")
    again = json.loads(kiln.run(*args, timeout=1200).stdout)
    assert again["digest"] == res["digest"]
    assert again.get("skipped") or again["layersBuilt"] == 0


def test_podman_runs_the_image(kiln, world):
    _, res, place = built(kiln, world, "ampere")
    # podman names the image after the layout's path, which must be a valid
    # reference: a short one of lowercase letters and digits
    while True:
        short = pathlib.Path(tempfile.mkdtemp(prefix="kp-"))
        if re.fullmatch(r"kp-[a-z0-9]+", short.name):
            break
        short.rmdir()
    try:
        kiln.run("copy", "-q", place, f"oci:{short}/image:ampere")
        p = run("podman", "--root", short / "s", "--runroot", short / "r", "--storage-driver", "vfs",
                "--runtime", "runc", "run", "--rm", "--network", "none",
                "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=4096:4096",
                f"oci:{short}/image:ampere", "python", "-c", PROBE, check=False)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    assert f"flash_attn {TORCH['ampere'][4]} sm_80;sm_86 42" in p.stdout
    assert "linnaeus /app/linnaeus/linnaeus/__init__.py" in p.stdout


@pytest.mark.parametrize("arch", ["ampere", "turing", "hopper"])
def test_validate_runs_upstreams_checks_in_the_image(kiln, world, arch):
    """kiln validate with the shipped recipe's checks, for the arch the image
    records: in the image (FlashAttention's extension loads against the
    image's torch) and from its files."""
    _, res, place = built(kiln, world, arch)
    p = kiln.run("validate", place, "--cache", world[0] / "cache", check=False, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0].endswith(f"arch={arch}, in the image"), p.stdout
    got = {l.split()[1]: l.split(None, 2)[2] for l in p.stdout.splitlines()
           if l.startswith(("ok ", "FAIL ", "skip "))}
    torch, vision, _, _, fa = TORCH[arch]
    assert got["torch"] == f"torch {torch}; torch.version.cuda {'12.8' if arch == 'hopper' else '12.6'}"
    assert got["linnaeus"].startswith("import linnaeus (/app/linnaeus/linnaeus/__init__.py)")
    if fa:
        assert got["flash-attn"].startswith(f"flash_attn {fa}; imports flash_attn_func")
        assert got["flash-attn-ext"] == "flash_attn_2_cuda loads"
    else:
        assert "as expected" in got["flash-attn"] and "flash-attn-ext" not in got
    s = kiln.run("validate", place, "--static", check=False, timeout=600)
    assert s.returncode == 0, s.stdout + s.stderr
    # and another arch's expectations fail
    other = {"ampere": "hopper", "turing": "ampere", "hopper": "turing"}[arch]
    p = kiln.run("validate", place, "--arch", other, "--cache", world[0] / "cache", check=False,
                 timeout=600)
    assert p.returncode == 1 and "FAIL flash-attn" in p.stdout, p.stdout


def test_a_cold_build_elsewhere_gives_the_same_digest(kiln, world):
    """Same inputs, same image: a second builder with an empty cache (the
    FlashAttention extension compiled again) makes the same digest."""
    args, res, _ = built(kiln, world, "ampere")
    work = world[0]
    cold = [str(a) for a in args]
    cold[cold.index("--cache") + 1] = str(work / "cache-elsewhere")
    cold[cold.index("--output") + 1] = f"oci:{work}/out-elsewhere"
    again = json.loads(kiln.run(*cold, timeout=1200).stdout)
    assert again["layersCached"] == 0
    mine = {l["name"]: l["digest"] for l in res["layers"]}
    theirs = {l["name"]: l["digest"] for l in again["layers"]}
    assert theirs == mine
    assert again["digest"] == res["digest"]
