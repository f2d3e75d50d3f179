#!/usr/bin/env bash
# kiln run --gpu and kiln validate --gpu on a machine with an NVIDIA GPU and
# its driver:
#   bash scripts/gpu-check.sh path/to/kiln [ARCH [IMAGE]]
# ARCH (hopper, the default; ampere; turing) is the GPU's architecture.
# Makes a small image of its own (the host's /bin/sh, its Python and the
# libraries they and nvidia-smi need: no registry, no network), then checks
#   - kiln run --gpu IMAGE -- nvidia-smi -L lists a GPU (the driver's tool and
#     libraries are bound in, as the NVIDIA container toolkit's CDI spec does);
#   - /dev/nvidia0 and /dev/nvidiactl are character devices inside with --gpu;
#   - without --gpu the image has no /dev/nvidia0;
#   - kiln validate --gpu runs a recipe's GPU checks in the image: the
#     devices, the compute capability against ARCH (hopper 9.0, ampere 8.x,
#     turing 7.5), and fails them for another ARCH; --smoke runs with the GPU;
#   - with IMAGE (a linnaeus image, any place), kiln validate IMAGE --arch
#     ARCH --gpu: torch sees CUDA, the capability, a FlashAttention forward.
# Prints one PASS or FAIL line per check and exits 1 when any failed.
set -u
kiln=${1:?usage: gpu-check.sh KILN [ARCH [IMAGE]]}
kiln=$(readlink -f "$kiln")
arch=${2:-hopper}
image=${3:-}
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
# the host's Python (Debian's at /usr/bin/python3 where there is one): the
# interpreter at its own path, its standard library and what its extension
# modules link
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || true)
if [ -n "$py" ]; then
  py=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')
  stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  copy "$py" $(deps "$py")
  mkdir -p "$root$(dirname "$stdlib")"
  cp -rL "$stdlib" "$root$stdlib" 2>/dev/null
  for so in "$stdlib"/lib-dynload/*.so; do [ -e "$so" ] && copy $(deps "$so"); done
fi
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

# kiln validate --gpu: a recipe whose GPU checks need the devices and the
# driver inside the image
cat > "$work/gpu.json" <<'EOF'
{
  "recipe": 1, "name": "gpu-check", "base": "scratch", "layers": [],
  "variables": {"arch": {"default": "hopper", "allowed": ["hopper", "ampere", "turing"]},
                "python": {"default": "/usr/bin/python3"}},
  "profiles": {"by": "arch", "values": {"hopper": {"capability": "9.0"},
                                        "ampere": {"capability": "8"},
                                        "turing": {"capability": "7.5"}}},
  "validate": {
    "python": "${python}",
    "checks": [
      {"name": "devices", "gpu": true,
       "code": "import os\nassert os.path.exists('/dev/nvidiactl'), 'no /dev/nvidiactl'\nassert [n for n in os.listdir('/dev') if n.startswith('nvidia') and n[6:].isdigit()], 'no /dev/nvidiaN'\n"},
      {"name": "capability", "gpu": true, "module": "subprocess",
       "values": {"subprocess.run(['nvidia-smi', '--query-gpu=compute_cap', '--format=csv,noheader'], capture_output=True, text=True, check=True).stdout.split()[0]": "${capability}"}}
    ]
  }
}
EOF
validate() {
  "$kiln" validate "oci:$work/img:gpu" --recipe "$work/gpu.json" --cache "$work/cache" \
    --set "python=$py" "$@"
}
if [ -z "$py" ]; then
  fail "kiln validate --gpu: no python3 on this host to put in the image"
else
  if out=$(validate --set "arch=$arch" --gpu 2>&1) && grep -q '^ok   capability' <<<"$out"; then
    pass "kiln validate --gpu --set arch=$arch: $(grep '^ok   capability' <<<"$out")"
  else
    fail "kiln validate --gpu --set arch=$arch: $out"
  fi
  other=turing; [ "$arch" = turing ] && other=hopper
  if out=$(validate --set "arch=$other" --gpu 2>&1); then
    fail "kiln validate --gpu --set arch=$other passed on a $arch GPU: $out"
  elif grep -q '^FAIL capability' <<<"$out"; then
    pass "kiln validate --gpu --set arch=$other fails: $(grep '^FAIL capability' <<<"$out")"
  else
    fail "kiln validate --gpu --set arch=$other: $out"
  fi
  if out=$(validate --set "arch=$arch" --gpu --smoke 'nvidia-smi -L' 2>&1) &&
     grep -q '^ok   smoke' <<<"$out" && grep -q '^GPU 0' <<<"$out"; then
    pass "kiln validate --gpu --smoke 'nvidia-smi -L'"
  else
    fail "kiln validate --gpu --smoke 'nvidia-smi -L': $out"
  fi
fi

# a real linnaeus image: the shipped recipe's checks, GPU ones included
if [ -n "$image" ]; then
  if out=$("$kiln" validate "$image" --arch "$arch" --gpu --cache "$work/cache" 2>&1); then
    pass "kiln validate $image --arch $arch --gpu"
  else
    fail "kiln validate $image --arch $arch --gpu"
  fi
  echo "$out"
fi

exit $failed
