#!/bin/bash
# Layer throughput, side by side with the usual pipelines.
#   bench/layers.sh [TREE]     (default /usr/share; KILN=path/to/kiln)
# Prints one line per run and the ratios the issue sets targets for:
#   kiln zstd  <= 1.5 x  `tar | zstd -T0 -3`
#   kiln gzip  <  umoci insert
#   warm-cache rebuild < 0.3 s
set -euo pipefail
TREE=$(realpath "${1:-/usr/share}")
KILN=$(realpath "${KILN:-build/cli/kiln}")
W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM
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
echo "blob sizes: gzip $((gz / 1048576)) MiB, zstd $((zs / 1048576)) MiB"
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "ratio kiln zstd / (tar | zstd -T0 -3):  $(ratio "${T[kiln append zstd]}" "${T[tar | zstd -T0 -3 | sha256sum]}")  (target <= 1.5)"
echo "ratio kiln gzip / umoci insert:         $(ratio "${T[kiln append gzip]}" "${T[umoci insert (gzip)]}")  (target < 1)"
echo "ratio kiln gzip / (tar | gzip -6):      $(ratio "${T[kiln append gzip]}" "${T[tar | gzip -6 | sha256sum]}")"
echo "warm rebuild: gzip ${T[kiln append gzip, warm]} s, zstd ${T[kiln append zstd, warm]} s  (target < 0.3)"
