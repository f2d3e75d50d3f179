#!/bin/sh
# Peak memory of `kiln append` on a 2 GiB file plus 100,000 small files,
# which must stay under 128 MiB; and on a 128 MiB file against the 2 GiB
# file alone, which must differ by less than 16 MiB (memory does not grow
# with the layer's size).
# Usage: bench/layers-mem.sh [KILN]    (exit 1 when a run goes over the bound)
set -eu
KILN=${1:-${KILN:-build/cli/kiln}}
LIMIT_KB=$((128 * 1024))
W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-mem.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM

mkdir -p "$W/tree/big" "$W/tree/small"
head -c $((2 * 1024 * 1024 * 1024)) /dev/urandom > "$W/tree/big/2GiB.bin"
python3 - "$W/tree/small" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, f"d{d:03}")
    os.mkdir(p)
    for f in range(1000):
        with open(os.path.join(p, f"f{f:04}.txt"), "w") as fh:
            fh.write(f"file {d}/{f}\n" * 8)
PY

mkdir -p "$W/t128" "$W/t2g"
head -c $((128 * 1024 * 1024)) /dev/urandom > "$W/t128/128MiB.bin"
ln "$W/tree/big/2GiB.bin" "$W/t2g/2GiB.bin"

# peak RSS in KiB of kiln append TREE with compression COMP
peak() {
        rm -rf "$W/out" "$W/cache"
        /usr/bin/time -v "$KILN" append scratch --layer "$1:/data" -t "oci:$W/out:v1" \
                --compression "$2" --cache "$W/cache" -q > /dev/null 2> "$W/time.txt"
        sed -n 's/.*Maximum resident set size (kbytes): //p' "$W/time.txt"
}

status=0
for comp in gzip zstd none; do
        small=$(peak "$W/t128" "$comp")
        large=$(peak "$W/t2g" "$comp")
        d=$((large - small))
        verdict=ok
        if [ "${d#-}" -ge $((16 * 1024)) ]; then verdict=GROWS; status=1; fi
        printf 'layers-mem %-5s 128 MiB file %6d KiB, 2 GiB file %6d KiB: %+d KiB (limit 16384) %s\n' \
                "$comp" "$small" "$large" "$d" "$verdict"
done
for comp in gzip zstd none; do
        rm -rf "$W/out" "$W/cache"
        /usr/bin/time -v "$KILN" append scratch --layer "$W/tree:/data" -t "oci:$W/out:v1" \
                --compression "$comp" --cache "$W/cache" -q > /dev/null 2> "$W/time.txt"
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$W/time.txt")
        wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$W/time.txt")
        verdict=ok
        if [ "$rss" -ge "$LIMIT_KB" ]; then verdict=OVER; status=1; fi
        printf 'layers-mem %-5s 2 GiB + 100000 files: peak RSS %6d KiB (limit %d KiB) %s, wall %s\n' \
                "$comp" "$rss" "$LIMIT_KB" "$verdict" "$wall"
done
exit $status
