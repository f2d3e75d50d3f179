#!/usr/bin/env bash
# kiln's main job on an embedded default, on a fresh machine: installs the
# dependencies, builds kiln, assembles a small image into an OCI layout on disk,
# checks it, carries it through an archive (as for an air gap) and proves the
# digest survives the trip.  Everything stays under ./demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -x build/cli/kiln ] || meson setup build >/dev/null
ninja -C build >/dev/null
K=build/cli/kiln
rm -rf demo && mkdir -p demo/app
printf 'print("hello from kiln")\n' > demo/app/main.py
if $K help append >/dev/null 2>&1; then
  $K append scratch --layer demo/app:/app -t oci:demo/layout:hello
else
  # before the layer builder: start from a layout made with umoci
  umoci init --layout demo/layout >/dev/null
  umoci new --image demo/layout:hello >/dev/null
  umoci insert --rootless --image demo/layout:hello demo/app /app >/dev/null
fi
$K inspect oci:demo/layout:hello
$K fsck oci:demo/layout
d1=$($K digest oci:demo/layout:hello)
$K copy -q oci:demo/layout:hello oci-archive:demo/hello.oci.tar:hello >/dev/null
$K copy -q oci-archive:demo/hello.oci.tar:hello oci:demo/mirror:hello >/dev/null
d2=$($K digest oci:demo/mirror:hello)
echo "layout:  $d1"
echo "mirror:  $d2"
[ "$d1" = "$d2" ] && echo "digest preserved bit for bit"
