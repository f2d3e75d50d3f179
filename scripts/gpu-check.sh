#!/usr/bin/env bash
# kiln run --gpu on a machine with an NVIDIA GPU and its driver:
#   bash scripts/gpu-check.sh path/to/kiln
# Makes a small image of its own (the host's /bin/sh and the libraries it
# and nvidia-smi need: no registry, no network), then checks that
#   - kiln run --gpu IMAGE -- nvidia-smi -L lists a GPU (the driver's tool and
#     libraries are bound in, as the NVIDIA container toolkit's CDI spec does);
#   - /dev/nvidia0 and /dev/nvidiactl are character devices inside with --gpu;
#   - without --gpu the image has no /dev/nvidia0.
# Prints one PASS or FAIL line per check and exits 1 when any failed.
set -u
kiln=${1:?usage: gpu-check.sh KILN}
kiln=$(readlink -f "$kiln")
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
failed=0

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; failed=1; }

# files at their own paths, links followed (merged-/usr hosts link /bin)
copy() {
  for f in "$@"; do
    [ -e "$f" ] || continue
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}
deps() { ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'; }

mkdir -p "$root/tmp" "$root/etc"
copy /bin/sh $(deps /bin/sh)
smi=$(command -v nvidia-smi || true)
if [ -n "$smi" ]; then copy $(deps "$smi"); fi
if ! "$kiln" append scratch --layer "$root:/" -t "oci:$work/img:gpu" --cache "$work/cache" \
    > "$work/append.log" 2>&1; then
  cat "$work/append.log"
  fail "image: kiln append of the host's sh"
  exit 1
fi
run() { "$kiln" run --cache "$work/cache" "$@"; }

if [ -z "$smi" ]; then
  fail "nvidia-smi -L: no nvidia-smi on this host"
elif out=$(run --gpu "oci:$work/img:gpu" -- nvidia-smi -L 2>&1) && grep -q '^GPU 0' <<<"$out"; then
  pass "nvidia-smi -L in the sandbox: $(head -1 <<<"$out")"
else
  fail "nvidia-smi -L in the sandbox: $out"
fi

if out=$(run --gpu "oci:$work/img:gpu" -- sh -c 'test -c /dev/nvidia0 && test -c /dev/nvidiactl && echo yes' 2>&1) &&
   [ "$out" = yes ]; then
  pass "/dev/nvidia0 and /dev/nvidiactl are devices inside with --gpu"
else
  fail "/dev/nvidia0 inside with --gpu: $out"
fi

if out=$(run "oci:$work/img:gpu" -- sh -c 'test -e /dev/nvidia0 && echo present || echo absent' 2>&1) &&
   [ "$out" = absent ]; then
  pass "no /dev/nvidia0 without --gpu"
else
  fail "no /dev/nvidia0 without --gpu: $out"
fi

exit $failed
