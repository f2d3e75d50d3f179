#!/bin/sh
# bench/registry.sh: kiln against skopeo on a local docker-registry.
#
# Pushes and pulls an image of about SIZE_MIB (default 1024) MiB in LAYERS
# (default 8) uncompressed layers, side by side with `skopeo copy`, and
# prints times and ratios:
#   push      kiln copy oci: -> registry     vs skopeo copy oci: -> docker://
#   pull      kiln copy registry -> oci:     vs skopeo copy docker:// -> oci:
#   no-op     kiln copy oci: -> registry again (every blob already there)
#   parallel  kiln push and pull with --jobs 4 (the default) and 8 vs --jobs 1
#   curl      the same blobs PUT one by one with curl (POST, then PUT
#             ?digest=), and fetched with curl | sha256sum: what the
#             registry and the loopback allow
# Everything goes to 127.0.0.1.  The registry's storage and the layouts live
# under ${TMPDIR:-/tmp}: TMPDIR=/dev/shm takes the disk out of the numbers.
# Usage: bench/registry.sh [KILN]
set -eu

KILN=${1:-${KILN:-build/cli/kiln}}
SIZE_MIB=${SIZE_MIB:-1024}
LAYERS=${LAYERS:-8}
ROUNDS=${ROUNDS:-1}
case $KILN in /*) ;; *) KILN=$(pwd)/$KILN ;; esac
[ -x "$KILN" ] || { echo "bench: no kiln binary at $KILN" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-XXXXXX")
REG_PID=
cleanup() {
        # (under set -e a failing kill or wait would end the trap before the rm)
        if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || :; wait "$REG_PID" 2>/dev/null || :; fi
        rm -rf "$W"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/config.yml" <<EOC
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/data
http:
  addr: 127.0.0.1:$PORT
EOC
env -u http_proxy -u https_proxy /usr/bin/docker-registry serve "$W/config.yml" >"$W/registry.log" 2>&1 &
REG_PID=$!
REG=127.0.0.1:$PORT
for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
        sleep 0.1
done

echo "bench: building a $SIZE_MIB MiB image in $LAYERS layers" >&2
python3 - "$W/img" "$SIZE_MIB" "$LAYERS" <<'EOP'
import hashlib, io, json, os, pathlib, sys, tarfile
lay, size, n = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
(lay / "blobs" / "sha256").mkdir(parents=True)
(lay / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
def put(data):
    d = hashlib.sha256(data).hexdigest()
    (lay / "blobs" / "sha256" / d).write_bytes(data)
    return "sha256:" + d
per = size * 1024 * 1024 // n
layers, diff_ids = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = os.urandom(per)
        ti = tarfile.TarInfo(f"layer{i}.bin"); ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    d = put(raw)
    diff_ids.append(d)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(raw)})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created_by": "bench"} for _ in layers]}).encode()
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
                "layers": layers}).encode()
md = put(m)
(lay / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(m),
     "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
EOP

now() { date +%s.%N; }
# t CMD...: runs CMD, prints its wall time in seconds
t() {
        s=$(now)
        "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err" >&2; echo "bench: failed: $*" >&2; exit 1; }
        e=$(now)
        python3 -c "print(f'{$e - $s:.3f}')"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
best() { # best of ROUNDS runs of a command whose first argument names the round
        b=
        for r in $(seq "$ROUNDS"); do
                v=$("$@" "$r")
                b=$(python3 -c "print(min(x for x in [$v${b:+, $b}]))")
        done
        echo "$b"
}

# every push round starts from an empty registry (distribution keeps no
# cache in memory by default), so neither tool finds a blob to mount
wipe() { rm -rf "$W/data/docker/registry/v2"; }
push_sk() { wipe; t skopeo copy -q --dest-tls-verify=false "oci:$W/img:v1" "docker://$REG/sk/push$1:v1"; }
push_k() { wipe; t "$KILN" copy -q "oci:$W/img:v1" "$REG/kiln/push$1:v1"; }
pull_sk() { rm -rf "$W/out-sk"; t skopeo copy -q --src-tls-verify=false "docker://$REG/kiln/push1:v1" "oci:$W/out-sk:v1"; }
pull_k() { rm -rf "$W/out-k"; t "$KILN" copy -q "$REG/kiln/push1:v1" "oci:$W/out-k:v1"; }
noop_k() { t "$KILN" copy -q "oci:$W/img:v1" "$REG/kiln/push1:v1"; }
jobs1() { t "$KILN" copy -q --jobs 1 "oci:$W/img:v1" "$REG/kiln/j1-$1:v1"; }
jobs4() { t "$KILN" copy -q --jobs 4 "oci:$W/img:v1" "$REG/kiln/j4-$1:v1"; }
jobs8() { t "$KILN" copy -q --jobs 8 "oci:$W/img:v1" "$REG/kiln/j8-$1:v1"; }
pjobs1() { rm -rf "$W/pj"; t "$KILN" copy -q --jobs 1 "$REG/kiln/push1:v1" "oci:$W/pj:v1"; }
pjobs4() { rm -rf "$W/pj"; t "$KILN" copy -q --jobs 4 "$REG/kiln/push1:v1" "oci:$W/pj:v1"; }
pjobs8() { rm -rf "$W/pj"; t "$KILN" copy -q --jobs 8 "$REG/kiln/push1:v1" "oci:$W/pj:v1"; }
# every blob of the image: POST for a session, PUT the file with ?digest=
curl_put_all() {
        for f in "$W"/img/blobs/sha256/*; do
                h=$(basename "$f")
                loc=$(curl -s -o /dev/null -D - -X POST "http://$REG/v2/curl/p$1/blobs/uploads/" |
                        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
                case $loc in /*) loc="http://$REG$loc" ;; esac
                curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
                        --data-binary "@$f" "$loc&digest=sha256:$h" || return 1
        done
}
curl_get_all() {
        for f in "$W"/img/blobs/sha256/*; do
                curl -sf "http://$REG/v2/kiln/push1/blobs/sha256:$(basename "$f")" | sha256sum >/dev/null ||
                        return 1
        done
}
curl_push() { t curl_put_all "$1"; }
curl_pull() { t curl_get_all; }

PUSH_SK=$(best push_sk); PUSH_K=$(best push_k)
"$KILN" copy -q "oci:$W/img:v1" "$REG/kiln/push1:v1" >/dev/null # what the pulls read
PULL_SK=$(best pull_sk); PULL_K=$(best pull_k)
R0=$ROUNDS; ROUNDS=5; NOOP=$(best noop_k); ROUNDS=$R0 # cheap: best of 5 against noise
J1=$(best jobs1); J4=$(best jobs4); J8=$(best jobs8)
PJ1=$(best pjobs1); PJ4=$(best pjobs4); PJ8=$(best pjobs8)
CPUT=$(best curl_push); CGET=$(best curl_pull)

printf '%-28s %10s %10s %8s\n' "" "kiln (s)" "skopeo (s)" "ratio"
printf '%-28s %10s %10s %8s\n' "push ${SIZE_MIB} MiB" "$PUSH_K" "$PUSH_SK" "$(ratio "$PUSH_SK" "$PUSH_K")"
printf '%-28s %10s %10s %8s\n' "pull ${SIZE_MIB} MiB" "$PULL_K" "$PULL_SK" "$(ratio "$PULL_SK" "$PULL_K")"
printf '%-28s %10s\n' "no-op re-push" "$NOOP"
printf '%-28s %10s %10s %8s\n' "push --jobs 4 vs --jobs 1" "$J4" "$J1" "$(ratio "$J1" "$J4")"
printf '%-28s %10s %10s %8s\n' "push --jobs 8 vs --jobs 1" "$J8" "$J1" "$(ratio "$J1" "$J8")"
printf '%-28s %10s %10s %8s\n' "pull --jobs 4 vs --jobs 1" "$PJ4" "$PJ1" "$(ratio "$PJ1" "$PJ4")"
printf '%-28s %10s %10s %8s\n' "pull --jobs 8 vs --jobs 1" "$PJ8" "$PJ1" "$(ratio "$PJ1" "$PJ8")"
printf '%-28s %10s %10s %8s\n' "push vs curl PUT (curl/kiln)" "$PUSH_K" "$CPUT" "$(ratio "$CPUT" "$PUSH_K")"
printf '%-28s %10s %10s %8s\n' "pull vs curl | sha256sum" "$PULL_K" "$CGET" "$(ratio "$CGET" "$PULL_K")"
echo "targets: push ratio >= 1.0 and >= 0.9 of curl, pull ratio >= 2.5, no-op <= 0.05 s, jobs ratios >= 1.3"
