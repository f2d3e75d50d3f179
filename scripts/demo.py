#!/usr/bin/env python3
"""kiln's main job on an embedded default: starts a local registry, pushes a
stand-in CUDA base to it, builds the linnaeus image for one arch from local
stand-ins (apt mirrors, wheel indexes, a git repository) through the mirror
map, pushes it, validates it, and prints the tag and the digest.

    scripts/demo.py [--arch ampere|hopper|pre-ampere] [--keep]"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from linnaeus_standins import build_args, make_inputs, push_base  # noqa: E402
from registry_util import Registry  # noqa: E402


class Kiln:
    def __init__(self, path):
        self.path = str(path)

    def run(self, *args):
        p = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit(f"kiln {args[0]} failed ({p.returncode})")
        return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ampere", choices=["hopper", "ampere", "pre-ampere"])
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    kiln = Kiln(os.environ.get("KILN", ROOT / "build" / "cli" / "kiln"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="kiln-demo-"))
    reg = Registry(work / "registry")
    try:
        print(f"registry      {reg.host} (docker-registry, storage in {work / 'registry'})")
        push_base(kiln, reg, work)
        print(f"base          {reg.host}/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04 (stand-in)")
        sets = make_inputs(work, a.arch)
        args = build_args(sets, reg, "--arch", a.arch, "--push", "--cache", work / "cache",
                          "--json")
        res = json.loads(kiln.run(*args).stdout)
        print(f"built         {res['layersBuilt']} layers, pushed {res['blobsCopied']} blobs")
        v = kiln.run("validate", res["tags"][0], "--arch", a.arch)
        for line in v.stdout.splitlines():
            print(f"validate      {line}")
        again = json.loads(kiln.run(*args).stdout)
        print(f"rebuild       {again['layersCached']} layers from the cache, "
              f"same digest: {again['digest'] == res['digest']}")
        print(f"tag           {res['tags'][0]}")
        print(f"digest        {res['digest']}")
    finally:
        reg.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
