#!/bin/bash
# A linnaeus-shaped build, kiln against buildah, ratios in one run.
#   bench/build.sh [--torch-mib N] [--small-wheels N] [--source-files N]
#                  [--arch A] [--compare] [--keep]          (KILN=path/to/kiln)
# Without KILN, a release kiln is built in build-rel (meson --buildtype=release
# -Db_sanitize=none).  The work directory is under ${TMPDIR:-/var/tmp}, removed
# at the end (--keep keeps it).
#
# Inputs (bench/linnaeus_inputs.py, on linnaeus_standins.py's build in the
# image): a Debian 12 root filesystem with gcc and a stand-in nvcc as the CUDA
# base in a local docker-registry; upstream's apt list as real Debian .debs; a
# torch wheel of N MiB of shared-object-like files (default 2048, deflating
# about 2.2x; 3000 .py and .h files besides); about 100 small wheels; a
# FlashAttention sdist compiled in the image; a linnaeus git repository of a
# few thousand files.  The recipe is the shipped recipes/linnaeus/linnaeus.json,
# pointed at the stand-ins with --set (it carries the sizes as is).
#
# The peer is buildah bud --isolation chroot --layers (Debian's buildah) of
# bench/linnaeus.Dockerfile, which does the recipe's work on the same files
# (the .debs kiln's system layer installed, unpacked and then configured by
# dpkg --configure -a as kiln's system/configure layer does; the wheels and
# sdist `kiln lock` lists, bind-mounted; the source COPYed) on the same base
# from the same registry; what it cannot make the same is in its header and
# printed below (--compare checks it file by file).
# Both start cold (an empty kiln cache, an empty buildah storage; both fetch
# the base from the registry) and push to the registry.  kiln runs first;
# the inputs are in the page cache for both.
#
# Measured (the machine's 2 cores are shared: ratios, not absolute numbers):
#   cold      kiln build --push  vs  buildah bud + buildah push
#             (target: kiln >= 3x faster)
#   rebuild   one source file edited and committed: kiln build --push
#             (target < 2 s)  vs  buildah bud (its layer cache) + push
#   RSS       kiln's peak RSS in the cold build (GNU time; target < 256 MiB)
# and each layer's seconds (kiln's layers and buildah's steps, timed by the
# lines of their output: kiln --progress plain, buildah bud), and the bytes
# each image pushed.
# --compare unpacks both images and lists where their files differ.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
TORCH_MIB=2048 SMALL=100 FILES=3000 ARCH=ampere COMPARE= KEEP=
while [ $# -gt 0 ]; do
        case $1 in
        --torch-mib) TORCH_MIB=$2; shift ;;
        --small-wheels) SMALL=$2; shift ;;
        --source-files) FILES=$2; shift ;;
        --arch) ARCH=$2; shift ;;
        --compare) COMPARE=1 ;;
        --keep) KEEP=1 ;;
        *) echo "usage: bench/build.sh [--torch-mib N] [--small-wheels N] [--source-files N]" \
                "[--arch A] [--compare] [--keep]" >&2; exit 2 ;;
        esac
        shift
done
PY=/usr/bin/python3
command -v buildah > /dev/null || { echo "bench: buildah is missing (scripts/setup.sh installs it)" >&2; exit 2; }
if [ -z "${KILN:-}" ]; then
        [ -f "$ROOT/build-rel/build.ninja" ] ||
                nice meson setup "$ROOT/build-rel" "$ROOT" --buildtype=release -Db_sanitize=none > /dev/null
        nice ninja -C "$ROOT/build-rel" -j2 > /dev/null
        KILN=$ROOT/build-rel/cli/kiln
fi
KILN=$(realpath "$KILN")

# the space: the inputs (the torch wheel ~0.45x its size), kiln's cache
# (blob, unpacked layers for the build step), buildah's storage (the files
# and the layers diffed), two registry copies: about 6x the torch size + 3 GiB
TMPROOT=${TMPDIR:-/var/tmp}
avail=$(( $(df -Pk "$TMPROOT" | awk 'NR == 2 {print $4}') / 1024 ))
need=$(( TORCH_MIB * 6 + 3072 + (COMPARE ? TORCH_MIB * 2 : 0) ))
if [ "$avail" -lt "$need" ]; then
        was=$TORCH_MIB
        TORCH_MIB=$(( (avail - 3072) / (COMPARE ? 8 : 6) ))
        [ "$TORCH_MIB" -ge 128 ] || { echo "bench: $avail MiB free under $TMPROOT, too little" >&2; exit 2; }
        echo "bench: only $avail MiB free under $TMPROOT: the torch wheel is scaled down from $was to $TORCH_MIB MiB"
fi

W=$(mktemp -d "$TMPROOT/kiln-bench-build.XXXXXX")
B=(buildah --root "$W/bstore" --runroot "$W/brun" --storage-driver overlay)
REG_PID=
cleanup() {
        if [ -n "$REG_PID" ]; then kill "$REG_PID" 2> /dev/null || :; wait "$REG_PID" 2> /dev/null || :; fi
        if [ -d "$W/bstore" ]; then
                "${B[@]}" rm --all > /dev/null 2>&1 || :
                "${B[@]}" rmi --all --force > /dev/null 2>&1 || :
                # what the overlay driver still has mounted under the work directory
                awk -v w="$W/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r |
                        while read -r m; do umount "$m" 2> /dev/null || :; done
        fi
        if [ -n "$KEEP" ]; then echo "bench: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT INT TERM

now() { echo "$EPOCHREALTIME"; }
secs() { echo "scale=2; ($2 - $1) / 1" | bc; }
ratio() { echo "scale=1; $1 / $2" | bc; }
# each line of stdin, behind the time it came
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
rss() { awk '/Maximum resident set size/ {printf "%d", $6 / 1024}' "$1"; }

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/registry.yml" << EOC
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
EOC
env -u http_proxy -u https_proxy /usr/bin/docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
REG=127.0.0.1:$PORT
for _ in $(seq 100); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2> /dev/null && break
        sleep 0.1
done

echo "bench: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); kiln $KILN; $(buildah --version)"
t0=$(now)
$PY "$HERE/linnaeus_inputs.py" make "$W/in" "$REG" "$KILN" --arch "$ARCH" --torch-mib "$TORCH_MIB" \
        --small-wheels "$SMALL" --source-files "$FILES"
t1=$(now)
SETS=()
while IFS= read -r s; do SETS+=(--set "$s"); done < <($PY -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["sets"].items():
    print(f"{k}={v}")' "$W/in/inputs.json")
$PY - "$W/in/inputs.json" "$(secs "$t0" "$t1")" << 'EOP'
import json, sys
s = json.load(open(sys.argv[1]))["sizes"]
print(f"inputs: torch wheel {s['torch_wheel'] / 2**20:.0f} MiB ({s['torch_files']} files), "
      f"source {s['source_files']} files; made in {sys.argv[2]} s")
EOP

RECIPE=$ROOT/recipes/linnaeus/linnaeus.json
KARGS=(build "$RECIPE" --mirror "docker.io=$REG" --set "image_repository=$REG/bench/linnaeus-kiln"
        "${SETS[@]}" --arch "$ARCH" --cache "$W/kcache")
"$KILN" "${KARGS[@]}" --dry-run --json > "$W/plan.json"
# what the Dockerfile installs: the lock's wheels (its own cache: kiln's stays cold)
"$KILN" lock "$RECIPE" --mirror "docker.io=$REG" --set "image_repository=$REG/bench/linnaeus-kiln" \
        "${SETS[@]}" --arch "$ARCH" --cache "$W/lockcache" --lock "$W/lock.json" > /dev/null
rm -rf "$W/lockcache"
var() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["variables"][sys.argv[2]])' "$W/plan.json" "$1"; }

kiln_run() { # name: kiln build --push, timed, its progress stamped
        local t0 t1
        t0=$(now)
        /usr/bin/time -v -o "$W/kiln-$1.time" "$KILN" "${KARGS[@]}" --push --progress plain 2>&1 |
                stamp > "$W/kiln-$1.log" || { cut -d' ' -f2- "$W/kiln-$1.log" | tail -30 >&2; exit 1; }
        t1=$(now)
        K_ALL=$(secs "$t0" "$t1")
        echo "kiln $1: build + push $K_ALL s, peak RSS $(rss "$W/kiln-$1.time") MiB"
}
BASE=$REG/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04
BARGS=(bud --isolation chroot --layers --tls-verify=false --build-arg "BASE=$BASE"
        --build-arg "ARCH=$ARCH" --build-arg "CUDA_ARCH_LIST=$(var cuda_arch_list)"
        --build-arg "MAX_JOBS=$(var max_jobs)" -f "$HERE/linnaeus.Dockerfile"
        -t "bench/linnaeus:$ARCH" "$W/in/ctx")
BDEST=docker://$REG/bench/linnaeus-buildah:$ARCH
buildah_run() { # name: bud and push, timed, the bud output stamped
        local t0 t1 t2
        t0=$(now)
        /usr/bin/time -v -o "$W/buildah-$1.time" "${B[@]}" "${BARGS[@]}" 2>&1 | stamp > "$W/buildah-$1.log" ||
                { cut -d' ' -f2- "$W/buildah-$1.log" | tail -30 >&2; exit 1; }
        t1=$(now)
        "${B[@]}" push --tls-verify=false "bench/linnaeus:$ARCH" "$BDEST" > "$W/buildah-$1-push.log" 2>&1 ||
                { cat "$W/buildah-$1-push.log" >&2; exit 1; }
        t2=$(now)
        B_BUD=$(secs "$t0" "$t1") B_PUSH=$(secs "$t1" "$t2") B_ALL=$(secs "$t0" "$t2")
        echo "buildah $1: bud $B_BUD s + push $B_PUSH s = $B_ALL s, peak RSS $(rss "$W/buildah-$1.time") MiB"
}

# ---- cold ----
kiln_run cold
K_COLD=$K_ALL K_RSS=$(rss "$W/kiln-cold.time")
system=$(sed -n 's/^[0-9.]* layer system: built \(sha256:[0-9a-f]*\)$/\1/p' "$W/kiln-cold.log")
counts=$($PY "$HERE/linnaeus_inputs.py" context "$W/in" "$W/lock.json" "$system" "$W/registry")
echo "buildah's context (files per recipe layer): $counts"
buildah_run cold
B_COLD=$B_ALL B_COLD_BUD=$B_BUD B_COLD_PUSH=$B_PUSH

# ---- one source file changed ----
$PY "$HERE/linnaeus_inputs.py" edit "$W/in"
kiln_run edit
K_EDIT=$K_ALL
buildah_run edit
B_EDIT=$B_ALL

# ---- the table ----
echo
$PY "$HERE/linnaeus_inputs.py" report "$W" "$REG" nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04 \
        "bench/linnaeus-kiln:$ARCH-$(var torch_variant)" "bench/linnaeus-buildah:$ARCH"
cat << EOT

                                 kiln     buildah   buildah/kiln
cold build + push            $(printf '%8.2f s %8.2f s %8.1f x' "$K_COLD" "$B_COLD" "$(ratio "$B_COLD" "$K_COLD")")   (target >= 3 x)
  buildah bud, push                   $(printf '%8.2f s, %.2f s' "$B_COLD_BUD" "$B_COLD_PUSH")
one source file + push       $(printf '%8.2f s %8.2f s %8.1f x' "$K_EDIT" "$B_EDIT" "$(ratio "$B_EDIT" "$K_EDIT")")   (kiln target < 2 s)
kiln peak RSS, cold          $(printf '%8d MiB' "$K_RSS")                       (target < 256 MiB)

not the same in the two builds (--compare lists the files): dpkg --unpack runs the preinst
scripts (kiln's system layer runs none; both run the postinst ones in dpkg --configure -a),
and dpkg's logs and -old backups stay, where kiln leaves them out; pip writes its INSTALLER,
REQUESTED and direct_url.json; linnaeus's editable install is setuptools' (a finder module,
its own METADATA) against kiln's .pth; buildah leaves an empty /etc/hosts.
EOT

if [ -n "$COMPARE" ]; then
        echo
        "$KILN" unpack "$REG/bench/linnaeus-kiln:$ARCH-$(var torch_variant)" "$W/u-kiln" --rootless > /dev/null
        "$KILN" unpack "${BDEST#docker://}" "$W/u-buildah" --rootless > /dev/null
        $PY "$HERE/linnaeus_inputs.py" compare "$W/u-kiln" "$W/u-buildah"
fi
