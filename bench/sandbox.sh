#!/bin/bash
# The sandbox, timed in one run (ratios, not absolute numbers):
#   bench/sandbox.sh [ROOTFS.tar]     (KILN=path/to/kiln)
# ROOTFS.tar defaults to the Debian root filesystem scripts/setup.sh makes.
# Prints:
#   unpack   the base into CACHE/rootfs (once per machine), next to umoci unpack
#   no-op    a recipe whose one run layer is `true`, on the unpacked base:
#            the sandbox, the empty layer, the image (target < 0.5 s)
#   run      kiln run IMAGE -- true, start to exit, next to podman run (runc)
set -euo pipefail
KILN=$(realpath "${KILN:-build/cli/kiln}")
ROOTFS=${1:-${KILN_TEST_ROOTFS_DIR:-/var/cache/kiln-test}/bookworm-gcc.tar}
# lowercase: podman names the image after its path
W=${TMPDIR:-/tmp}/kiln-bench-$$
mkdir -m 700 "$W"
trap 'rm -rf "$W"' EXIT INT TERM
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

SOURCE_DATE_EPOCH=0 "$KILN" append scratch --layer "$ROOTFS:/" -t "oci:$W/img:base" --cache "$W/c" -q > /dev/null
t0=$(now); "$KILN" run "oci:$W/img:base" --cache "$W/c" -- true; t1=$(now)
umoci unpack --rootless --image "$W/img:base" "$W/umoci" > /dev/null 2>&1; t2=$(now)
echo "unpack   kiln $(secs "$t0" "$t1") s (first run, unpack included)  umoci $(secs "$t1" "$t2") s"

cat > "$W/r.json" <<JSON
{"recipe": 1, "name": "noop", "base": "oci:$W/img:base",
 "layers": [{"name": "noop", "kind": "run", "command": ["true"]}],
 "tag": {"repository": "example.invalid/noop", "tag": "v1"}}
JSON
t0=$(now); SOURCE_DATE_EPOCH=0 "$KILN" build "$W/r.json" --output "oci:$W/out" --cache "$W/c" --json > "$W/b.json"; t1=$(now)
step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["seconds"])' "$W/b.json")
echo "no-op    run layer $step s (target < 0.5 s); whole build with the base copied out $(secs "$t0" "$t1") s"

n=20
t0=$(now); for _ in $(seq $n); do "$KILN" run "oci:$W/img:base" --cache "$W/c" -- true; done; t1=$(now)
k=$(echo "scale=4; ($t1 - $t0) / $n" | bc)
if command -v podman > /dev/null; then
        P=(podman --root "$W/p" --runroot "$W/pr" --storage-driver overlay --runtime runc)
        id=$("${P[@]}" pull -q "oci:$W/img:base" | tail -1)
        t0=$(now); for _ in $(seq $n); do "${P[@]}" run --rm --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 "$id" true; done; t1=$(now)
        p=$(echo "scale=4; ($t1 - $t0) / $n" | bc)
        echo "run      kiln run $k s  podman run $p s  ratio $(echo "scale=2; $p / $k" | bc) x"
else
        echo "run      kiln run $k s (no podman to compare)"
fi
