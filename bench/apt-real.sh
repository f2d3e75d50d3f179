#!/usr/bin/env bash
# By hand, never in CI (it reaches the real Debian mirror): resolves jq from
# Debian's real bookworm index over plain http, the Release checked with
# Debian's own keyring (debian-archive-keyring), and prints the time.
#   bash bench/apt-real.sh [build/cli/kiln]
set -euo pipefail
KILN=${1:-${KILN:-build/cli/kiln}}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${APT_MIRROR:-http://deb.debian.org/debian}
[ -r "$KEYRING" ] || { echo "needs $KEYRING: apt-get install debian-archive-keyring" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/r.json" <<JSON
{"base": "scratch", "tag": {"repository": "bench/apt", "tag": "jq"},
 "layers": [{"name": "jq", "kind": "debs", "merged_usr": false,
             "apt": [{"mirror": "$MIRROR", "suite": "bookworm", "components": ["main"],
                      "keyring": "$KEYRING", "packages": ["jq", "libjq1", "libonig5"]}]}]}
JSON
for run in cold warm; do
  start=$(date +%s.%N)
  "$KILN" build "$work/r.json" --output "oci:$work/out:jq" --cache "$work/cache" --quiet
  end=$(date +%s.%N)
  printf '%s: jq from %s bookworm main, Release checked with %s: %.2f s\n' \
    "$run" "$MIRROR" "$KEYRING" "$(echo "$end - $start" | bc)"
done
# a keyring without Debian's keys must be refused
printf 'not a key' > "$work/empty.gpg"
sed "s|$KEYRING|$work/empty.gpg|" "$work/r.json" > "$work/bad.json"
if "$KILN" build "$work/bad.json" --output "oci:$work/bad:jq" --cache "$work/cache2" --quiet; then
  echo "FAIL: a Release was accepted with a keyring that holds no key" >&2
  exit 1
fi
echo "refused with a wrong keyring, as it must be"
