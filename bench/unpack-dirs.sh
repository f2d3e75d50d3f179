#!/bin/sh
# Time of `kiln unpack --rootless` on one layer of N read-only directories
# (mode 0555, so each mode is deferred to the end), for
# N = 10,000, 20,000 and 40,000: the user time per directory must stay flat
# (the deferred list was a linear scan per directory, O(N^2): +3.9 s at
# 40,000).  Prints the user, system and wall times per N.
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
make_layout(sys.argv[2], [(tar_bytes(entries), TAR)])
PY
        # user CPU time: the deferred list's cost is all there, while the
        # directories' creation is system time and waits on the disk
        python3 - "$KILN" "$W/lay$n" "$W/root$n" "$n" <<'PY'
import resource, subprocess, sys, time
kiln, lay, root, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.monotonic()
subprocess.run([kiln, "unpack", "--rootless", f"oci:{lay}:v1", root], check=True)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{n} dirs: user {ru.ru_utime:.2f} s ({ru.ru_utime * 1e6 / n:.1f} us/dir), "
      f"system {ru.ru_stime:.2f} s, wall {wall:.2f} s")
PY
        chmod -R u+rwx "$W/root$n"
        rm -rf "$W/root$n"
done
