#!/usr/bin/env bash
# Installs what kiln needs to build and test, from Debian's packages.
set -euo pipefail
pkgs=(
  build-essential meson ninja-build pkg-config clang
  libarchive-dev libssl-dev libcurl4-openssl-dev libjansson-dev libzstd-dev zlib1g-dev
  libdeflate-dev libcmocka-dev
  python3 python3-pytest python3-jsonschema
  docker-registry skopeo umoci oci-image-tool golang-github-opencontainers-image-spec-dev
  apache2-utils openssl git zstd pigz dpkg-dev bubblewrap bc time
  gpgv gpg
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
