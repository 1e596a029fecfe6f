#!/usr/bin/env bash
# omni update against a local HTTP server and a test key (made here; the project's key is not
# used): a good signed manifest installs its package through a fake installer that records the
# file it got; --check only reports; a manifest changed after signing, one signed by another key,
# a package that is not the signed one, a downgrade and the same version are each refused (or
# "up to date") without the installer being run.
# Usage: update_test.sh OMNI SHARED_DIR
set -uo pipefail
omni="$1"
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
for tool in openssl dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
current=$(sed -n 's/^project(omninode VERSION \([0-9.]*\).*/\1/p' "$here/../CMakeLists.txt")
arch=$(dpkg --print-architecture)

# A tiny package of a given version: what matters here is that its bytes are checked.
make_deb() {  # VERSION -> prints the path
  local d="$tmp/deb-$1"
  mkdir -p "$d/DEBIAN"
  printf 'Package: omni\nVersion: %s\nArchitecture: %s\nMaintainer: test <t@localhost>\nDescription: test\n' "$1" "$arch" >"$d/DEBIAN/control"
  dpkg-deb --root-owner-group --build "$d" "$tmp/omni_$1_$arch.deb" >/dev/null
  echo "$tmp/omni_$1_$arch.deb"
}
openssl genpkey -algorithm ED25519 -out "$tmp/key.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$tmp/other.pem" 2>/dev/null
key=$("$here/../scripts/sign_release.sh" --public-key "$tmp/key.pem")

mkdir -p "$tmp/www"
python3 - "$tmp/www" >"$tmp/server.out" 2>"$tmp/server.err" <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
PY
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^port //p' "$tmp/server.out")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "FAIL: the HTTP server did not start: $(cat "$tmp/server.err")"; exit 1; }
base="http://127.0.0.1:$port"

# The fake installer records the path and SHA-256 of what it was given.
cat >"$tmp/installer" <<SH
#!/bin/sh
echo "\$1 \$(sha256sum "\$1" | cut -d' ' -f1)" >>"$tmp/installed"
SH
chmod +x "$tmp/installer"

publish() {  # DIR KEY VERSION: a signed release of VERSION under $base/DIR
  "$here/../scripts/sign_release.sh" "$2" "$tmp/www/$1" "$base/$1" "$(make_deb "$3")" >/dev/null
}
update() {  # DIR [flags...]: omni update against the release in DIR
  local dir=$1
  shift
  rm -f "$tmp/installed"
  "$omni" update --manifest-url "$base/$dir/manifest.json" --release-key "$key" --installer "$tmp/installer" \
    --download-dir "$tmp" "$@" >"$tmp/out" 2>&1
}
expect_refused() {  # NAME TEXT: the last update exited 1, said TEXT and installed nothing
  local code=$1
  [ "$code" = 1 ] || fail "$2: exit $code, expected 1: $(cat "$tmp/out")"
  grep -qF -- "$3" "$tmp/out" || fail "$2: no '$3' in: $(cat "$tmp/out")"
  [ ! -e "$tmp/installed" ] || fail "$2: the installer ran"
}
newer="${current%%.*}.$(( $(echo "$current" | cut -d. -f2) + 1 )).0"

# A good release: installed, and the installer got exactly the signed package.
publish good "$tmp/key.pem" "$newer"
update good
code=$?
[ "$code" = 0 ] || fail "good release: exit $code: $(cat "$tmp/out")"
want=$(sha256sum "$tmp/www/good/omni_${newer}_$arch.deb" | cut -d' ' -f1)
[ "$(cut -d' ' -f2 "$tmp/installed" 2>/dev/null)" = "$want" ] || fail "good release: the installer got $(cat "$tmp/installed" 2>/dev/null)"
grep -qF "installed omni $newer" "$tmp/out" || fail "good release: $(cat "$tmp/out")"
update good --check
[ $? = 0 ] && grep -qF "omni $newer is available" "$tmp/out" && [ ! -e "$tmp/installed" ] || fail "--check: $(cat "$tmp/out")"

# The manifest changed after signing (the version raised): refused as a whole.
publish tampered "$tmp/key.pem" "$newer"
sed -i "s/\"version\": \"$newer\"/\"version\": \"9$newer\"/" "$tmp/www/tampered/manifest.json"
update tampered
expect_refused $? "tampered manifest" "signature does not verify"
# Signed by a key that is not the pinned one.
publish otherkey "$tmp/other.pem" "$newer"
update otherkey
expect_refused $? "manifest of another key" "signature does not verify"
# The package on the server is not the one the manifest was signed with.
publish badpkg "$tmp/key.pem" "$newer"
printf 'x' >>"$tmp/www/badpkg/omni_${newer}_$arch.deb"
update badpkg
expect_refused $? "swapped package" "SHA-256"
# A signed but older release, and the same version.
publish old "$tmp/key.pem" "0.0.1"
update old
expect_refused $? "downgrade" "refusing a downgrade"
publish same "$tmp/key.pem" "$current"
update same
[ $? = 0 ] && grep -qF "is up to date" "$tmp/out" && [ ! -e "$tmp/installed" ] || fail "same version: $(cat "$tmp/out")"
# No signature file at all.
publish nosig "$tmp/key.pem" "$newer"
rm "$tmp/www/nosig/manifest.json.sig"
update nosig
expect_refused $? "missing signature" "HTTP status 404"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "update: good release installed; tampered, other key, swapped package, downgrade, no signature refused"
