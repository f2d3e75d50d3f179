#!/usr/bin/env python3
"""kiln's main job on an embedded default: starts a local registry, pushes a
stand-in CUDA base to it (a real Debian root filesystem with a stand-in
nvcc), builds the linnaeus images (hopper, ampere and turing, or the --arch
given) as upstream's Dockerfile does, from local stand-ins: upstream's apt
list as real Debian packages, wheel indexes, a FlashAttention sdist that
compiles inside the image against its torch, a git repository with
linnaeus's pyproject.toml.  It pushes them, validates each by running it,
rebuilds from the cache, and prints tags, digests, sizes and times.

    scripts/demo.py [--arch hopper|ampere|turing|pre-ampere]... [--keep]"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from linnaeus_standins import build_args, make_image_inputs, push_image_base  # noqa: E402
from registry_util import Registry  # noqa: E402


class Kiln:
    def __init__(self, path):
        self.path = str(path)

    def run(self, *args, env=None):
        p = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True,
                           env={**os.environ, **(env or {})})
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit(f"kiln {args[0]} failed ({p.returncode})")
        return p


def size_of(res):
    return sum(l["bytes"] for l in res.get("layers", []))


def human(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", action="append",
                    choices=["hopper", "ampere", "turing", "pre-ampere"],
                    help="a profile to build (default: hopper, ampere and turing)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    arches = a.arch or ["hopper", "ampere", "turing"]
    kiln = Kiln(os.environ.get("KILN", ROOT / "build" / "cli" / "kiln"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="kiln-demo-"))
    reg = Registry(work / "registry")
    ok = True
    try:
        print(f"registry      {reg.host} (docker-registry, storage in {work / 'registry'})")
        push_image_base(kiln, reg, work)
        print(f"base          {reg.host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04 (stand-in: "
              "Debian 12 with gcc, a stand-in nvcc)")
        for arch in arches:
            sets = make_image_inputs(work / "inputs", arch)
            args = build_args(sets, reg, "--arch", arch, "--push", "--cache", work / "cache",
                              "--json")
            t0 = time.monotonic()
            res = json.loads(kiln.run(*args).stdout)
            t1 = time.monotonic()
            print(f"[{arch}] built {res['layersBuilt']} layers, {res['layersCached']} cached, "
                  f"pushed {res['blobsCopied']} blobs in {t1 - t0:.1f} s")
            # in the image (the arch is the one the image records); with the
            # GPU checks where the host has NVIDIA devices
            gpu = ["--gpu"] if os.path.exists("/dev/nvidiactl") else []
            v = kiln.run("validate", res["tags"][0], "--cache", work / "cache", *gpu)
            for line in v.stdout.splitlines():
                print(f"[{arch}] validate  {line}")
            t2 = time.monotonic()
            again = json.loads(kiln.run(*args).stdout)
            t3 = time.monotonic()
            same = again["digest"] == res["digest"]
            ok = ok and same
            print(f"[{arch}] rebuild   {again['layersCached']} layers from the cache in "
                  f"{t3 - t2:.1f} s, same digest: {same}")
            print(f"[{arch}] tag       {res['tags'][0]}")
            print(f"[{arch}] digest    {res['digest']}")
            print(f"[{arch}] size      {human(size_of(res))} in {len(res.get('layers', []))} "
                  f"layers of its own (the base's are mounted)")
    finally:
        reg.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise SystemExit("a rebuild gave another digest")


if __name__ == "__main__":
    main()
