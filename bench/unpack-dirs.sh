#!/bin/sh
# Time of `kiln unpack --rootless` on one layer of N read-only directories
# (mode 0555, each holding a file, so each mode is deferred to the end), for
# N = 10,000, 20,000 and 40,000: the time per directory must stay flat (the
# deferred list was a linear scan per directory, O(N^2): +3.9 s at 40,000).
# Prints "N seconds us/dir" per N.
# Usage: bench/unpack-dirs.sh [KILN]
set -eu
KILN=${1:-${KILN:-build/cli/kiln}}
W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-dirs.XXXXXX")
trap 'chmod -R u+rwx "$W" 2>/dev/null; rm -rf "$W"' EXIT INT TERM
SRC=$(cd "$(dirname "$0")/.." && pwd)

for n in 10000 20000 40000; do
        python3 - "$SRC/tests/integration" "$W/lay$n" "$n" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from layers_helpers import TAR, make_layout, tar_bytes
n = int(sys.argv[3])
entries = []
for i in range(n):
    entries.append({"name": f"d{i}", "type": "dir", "mode": 0o555})
    entries.append({"name": f"d{i}/f", "data": b"f"})
make_layout(sys.argv[2], [(tar_bytes(entries), TAR)])
PY
        start=$(date +%s.%N)
        "$KILN" unpack --rootless "oci:$W/lay$n:v1" "$W/root$n"
        end=$(date +%s.%N)
        echo "$n $start $end" | awk '{ s = $3 - $2; printf "%d dirs: %.2f s, %.1f us/dir\n", $1, s, s * 1e6 / $1 }'
        chmod -R u+rwx "$W/root$n"
        rm -rf "$W/root$n"
done
