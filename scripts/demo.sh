#!/usr/bin/env bash
# kiln's main job on a fresh machine: installs the dependencies, builds kiln,
# then scripts/demo.py starts a local registry, pushes a stand-in CUDA base,
# builds and pushes the linnaeus image from local stand-ins, validates it and
# prints the tag and the digest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec /usr/bin/python3 scripts/demo.py "$@"
