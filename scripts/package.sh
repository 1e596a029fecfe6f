#!/usr/bin/env bash
# Builds the Debian package dist/omni_<version>_<arch>.deb (dpkg-deb): /usr/bin/omni (stripped),
# the web UI in /usr/share/omni/web, the systemd units, the default config /etc/omni/omni.toml (a
# conffile) and the maintainer scripts of packaging/ (packaging/README.md). Depends is computed by
# dpkg-shlibdeps from the binary's libraries.
#
# Usage: scripts/package.sh [--binary FILE] [--out DIR] [--no-web]
#   --binary FILE  the omni to package (default: build/apps/omni/omni, built there if missing)
#   --out DIR      where the .deb goes (default: dist/)
#   --no-web       package without the web UI (by default web/dist must be built: cd web && npm run build)
# Needs dpkg-dev (dpkg-shlibdeps) and binutils (strip). Prints the .deb's path last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary=""
out="$root/dist"
web=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-web) web=0; shift ;;
    *) echo "package.sh: unknown argument '$1' (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  binary="$root/build/apps/omni/omni"
  [ -x "$binary" ] || { [ -d "$root/build" ] || cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release; cmake --build "$root/build" --target omni; }
fi
[ -x "$binary" ] || { echo "package.sh: no omni binary at $binary" >&2; exit 1; }
if [ "$web" = 1 ] && [ ! -f "$root/web/dist/index.html" ]; then
  echo "package.sh: web/dist is not built (cd web && npm ci && npm run build), or pass --no-web" >&2
  exit 1
fi

version=$(sed -n 's/^project(omninode VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "package.sh: no project version in CMakeLists.txt" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/omni" "$pkg/usr/share/doc/omni"
install -m 0755 "$binary" "$pkg/usr/bin/omni"
strip --strip-unneeded "$pkg/usr/bin/omni"
install -m 0644 "$root"/packaging/systemd/omni-*.service "$root"/packaging/systemd/omni-*.timer "$pkg/lib/systemd/system/"
install -m 0644 "$root/packaging/omni.toml" "$pkg/etc/omni/omni.toml"
install -m 0644 "$root/README.md" "$root/packaging/debian/README.Debian" "$pkg/usr/share/doc/omni/"
if [ "$web" = 1 ]; then
  install -d "$pkg/usr/share/omni"
  cp -rL "$root/web/dist" "$pkg/usr/share/omni/web"
  chmod -R u=rwX,go=rX "$pkg/usr/share/omni/web"
fi
install -m 0755 "$root"/packaging/debian/{postinst,prerm,postrm} "$pkg/DEBIAN/"
echo /etc/omni/omni.toml >"$pkg/DEBIAN/conffiles"

# dpkg-shlibdeps wants a source package's debian/control to look at; a minimal one will do.
mkdir -p "$stage/src/debian"
printf 'Source: omni\n\nPackage: omni\nArchitecture: any\n' >"$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O -e "$pkg/usr/bin/omni" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies for $binary" >&2; exit 1; }
size=$(du -sk "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: omni
Version: $version
Architecture: $arch
Maintainer: OmniNode developers <omni@localhost>
Installed-Size: $size
Depends: $shlibs, passwd
Section: net
Priority: optional
Description: run open-weight LLMs across a network of ordinary machines
 OmniNode serves GGUF models split by transformer blocks over a swarm of
 volunteer machines (Cap'n Proto RPC over TLS 1.3, DHT discovery, relays
 for nodes behind NAT), with an OpenAI-compatible gateway and a web UI.
 This package has the omni command, its web UI and the omni-node,
 omni-gateway and omni-relay services (not enabled on install).
CONTROL

mkdir -p "$out"
deb="$out/omni_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
