#!/usr/bin/env bash
# Publishes a release for `omni update`: writes OUT_DIR/manifest.json (the version, and for each
# package its architecture, URL under BASE_URL and SHA-256), signs its exact bytes with the Ed25519
# release key into OUT_DIR/manifest.json.sig (128 hex digits), and copies the packages beside it.
# Upload OUT_DIR as it is to BASE_URL. See src/store/release_manifest.h for the format.
#
# Usage: scripts/sign_release.sh KEY.pem OUT_DIR BASE_URL PACKAGE.deb...
#        scripts/sign_release.sh --public-key KEY.pem   (the key's public half, to pin in cmd_update.cpp)
# A new key: openssl genpkey -algorithm ED25519 -out KEY.pem (keep it off the repository).
set -euo pipefail
hex() { od -An -v -tx1 | tr -d ' \n'; }
if [ "${1:-}" = --public-key ]; then
  openssl pkey -in "$2" -pubout -outform DER | tail -c 32 | hex
  echo
  exit 0
fi
[ $# -ge 4 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
key="$1" out="$2" base="${3%/}"
shift 3
mkdir -p "$out"
version=""
entries=()
for deb in "$@"; do
  v=$(dpkg-deb -f "$deb" Version)
  arch=$(dpkg-deb -f "$deb" Architecture)
  [ -z "$version" ] || [ "$version" = "$v" ] || { echo "sign_release.sh: $deb is version $v, not $version" >&2; exit 1; }
  version="$v"
  name=$(basename "$deb")
  [ "$(realpath "$deb")" = "$(realpath -m "$out/$name")" ] || cp "$deb" "$out/$name"
  sha=$(sha256sum "$deb" | cut -d' ' -f1)
  entries+=("\"$arch\": {\"url\": \"$base/$name\", \"sha256\": \"$sha\"}")
done
packages=$(IFS=,; echo "${entries[*]}")
printf '{"version": "%s", "packages": {%s}}\n' "$version" "$packages" >"$out/manifest.json"
openssl pkeyutl -sign -rawin -inkey "$key" -in "$out/manifest.json" | hex >"$out/manifest.json.sig"
echo >>"$out/manifest.json.sig"
echo "signed $out/manifest.json: omni $version, $# package(s)"
