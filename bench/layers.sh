#!/bin/bash
# Layer throughput, side by side with the usual pipelines.
#   bench/layers.sh [TREE]     (KILN=path/to/kiln)
# The default tree is 1 GiB of real shared libraries (/usr/lib/<multiarch>)
# plus thousands of small files (/usr/include), put together under the work
# directory with hardlinks (copied when that is another file system).  The
# outputs go to ${TMPDIR:-/tmp}: kiln fsyncs every blob it writes, the others
# do not; TMPDIR=/dev/shm takes the disk out of the comparison.
# Prints one line per run and the ratios the targets are set in:
#   kiln zstd  <= 1.5 x  `tar | zstd -T0 -3`, and >= 2.4 x faster than umoci insert
#   kiln gzip  >= 1.5 x faster than umoci insert, its size within 3% of umoci's
#   warm-cache rebuild < 0.3 s
set -euo pipefail
KILN=$(realpath "${KILN:-build/cli/kiln}")
W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM
if [ $# -ge 1 ]; then
        TREE=$(realpath "$1")
else
        LIBS=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
        TREE=$W/tree
        mkdir -p "$TREE"
        cp -al "$LIBS" "$TREE/lib" 2>/dev/null || cp -a "$LIBS" "$TREE/lib"
        cp -al /usr/include "$TREE/include" 2>/dev/null || cp -a /usr/include "$TREE/include"
fi
PARENT=$(dirname "$TREE")
BASE=$(basename "$TREE")

now() { date +%s.%N; }
declare -A T
run() { # name command...
        local name=$1 t0 t1
        shift
        t0=$(now)
        "$@" > /dev/null
        t1=$(now)
        T[$name]=$(echo "$t1 - $t0" | bc)
        printf '%-28s %8.2f s\n' "$name" "${T[$name]}"
}

size=$(du -sb "$TREE" | cut -f1)
files=$(find "$TREE" | wc -l)
echo "tree $TREE: $((size / 1048576)) MiB, $files entries, $(nproc) CPUs"
tar -cf - -C "$PARENT" "$BASE" > /dev/null # page cache

run "tar | gzip -6 | sha256sum" bash -c "tar -cf - -C '$PARENT' '$BASE' | gzip -6 | sha256sum"
run "tar | zstd -T0 -3 | sha256sum" bash -c "tar -cf - -C '$PARENT' '$BASE' | zstd -q -T0 -3 | sha256sum"
umoci init --layout "$W/umoci" > /dev/null
umoci new --image "$W/umoci:base" > /dev/null
run "umoci insert (gzip)" umoci insert --rootless --image "$W/umoci:base" "$TREE" /tree
run "kiln append gzip" "$KILN" append scratch --layer "$TREE:/tree" -t "oci:$W/kg:v1" \
        --compression gzip --cache "$W/cache-g" -q
run "kiln append zstd" "$KILN" append scratch --layer "$TREE:/tree" -t "oci:$W/kz:v1" \
        --compression zstd --cache "$W/cache-z" -q
run "kiln append none" "$KILN" append scratch --layer "$TREE:/tree" -t "oci:$W/kn:v1" \
        --compression none --cache "$W/cache-n" -q
sleep 1.1 # the stat index trusts files older than itself (git's racy rule)
run "kiln append gzip, warm" "$KILN" append scratch --layer "$TREE:/tree" -t "oci:$W/kg:v1" \
        --compression gzip --cache "$W/cache-g" -q
run "kiln append zstd, warm" "$KILN" append scratch --layer "$TREE:/tree" -t "oci:$W/kz:v1" \
        --compression zstd --cache "$W/cache-z" -q

gz=$(find "$W/kg/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
zs=$(find "$W/kz/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
um=$(find "$W/umoci/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
echo "blob sizes: kiln gzip $gz, umoci gzip $um, kiln zstd $zs bytes"
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "ratio kiln zstd / (tar | zstd -T0 -3):  $(ratio "${T[kiln append zstd]}" "${T[tar | zstd -T0 -3 | sha256sum]}")  (target <= 1.5)"
echo "umoci insert / kiln zstd:               $(ratio "${T[umoci insert (gzip)]}" "${T[kiln append zstd]}")  (target >= 2.4)"
echo "umoci insert / kiln gzip:               $(ratio "${T[umoci insert (gzip)]}" "${T[kiln append gzip]}")  (target >= 1.5)"
echo "kiln gzip size / umoci size:            $(echo "scale=3; $gz / $um" | bc)  (target <= 1.03)"
echo "ratio kiln gzip / (tar | gzip -6):      $(ratio "${T[kiln append gzip]}" "${T[tar | gzip -6 | sha256sum]}")"
echo "warm rebuild: gzip ${T[kiln append gzip, warm]} s, zstd ${T[kiln append zstd, warm]} s  (target < 0.3)"
