#!/usr/bin/env bash
# Copy throughput: kiln against skopeo, same image, same run.
#   bench/copy.sh [SIZE_MIB]   (default 1024; 8 layers)
# Prints seconds for each and the ratio skopeo/kiln (above 1: kiln faster).
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-build/cli/kiln}
size=${1:-1024}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/src" "$size" <<'PY'
import sys, os
sys.path.insert(0, "tests/integration")
from imagegen import make_image
size = int(sys.argv[2]) * 1024 * 1024
per = size // 8
layers = [{f"data/{i}.bin": os.urandom(per)} for i in range(8)]
make_image(sys.argv[1], "big", layers, compression="none")
PY
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
sync
k1=$(t "$KILN" copy -q "oci:$work/src:big" "oci:$work/k1:big")
s1=$(t skopeo copy "oci:$work/src:big" "oci:$work/s1:big")
kj=$(t "$KILN" copy -q --jobs 1 "oci:$work/src:big" "oci:$work/kj:big")
k2=$(t "$KILN" copy -q "oci:$work/src:big" "oci-archive:$work/k2.tar:big")
s2=$(t skopeo copy "oci:$work/src:big" "oci-archive:$work/s2.tar:big")
k3=$(t "$KILN" copy -q "oci:$work/src:big" "oci:$work/k1:big")
s3=$(t skopeo copy "oci:$work/src:big" "oci:$work/s1:big")
printf '%-34s %8s %8s %8s\n' "copy of ${size} MiB, 8 layers" kiln skopeo ratio
printf '%-34s %8.2f %8.2f %8.2f\n' "layout -> layout" "$k1" "$s1" "$(echo "$s1 / $k1" | bc -l)"
printf '%-34s %8.2f %8s %8.2f\n' "layout -> layout, --jobs 1 vs 4" "$kj" "" "$(echo "$kj / $k1" | bc -l)"
printf '%-34s %8.2f %8.2f %8.2f\n' "layout -> oci-archive" "$k2" "$s2" "$(echo "$s2 / $k2" | bc -l)"
printf '%-34s %8.2f %8.2f %8.2f\n' "again, all blobs present" "$k3" "$s3" "$(echo "$s3 / $k3" | bc -l)"
/usr/bin/time -f "kiln copy peak RSS: %M KiB" "$KILN" copy -q "oci:$work/src:big" "oci:$work/k4:big" >/dev/null
