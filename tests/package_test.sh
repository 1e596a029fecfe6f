#!/usr/bin/env bash
# The Debian package (scripts/package.sh) installed into a throw-away root: an overlay of / in a
# private mount and PID namespace (as root; skipped otherwise), so nothing reaches this machine's
# own / and every process dies with the namespace. Checks the files, the conffile, the user and
# /var/lib/omni, `systemd-analyze verify` on the units, that the installed omni reads
# /etc/omni/omni.toml, that `omni node` run as the unit runs it (user omni, --data-dir) serves a
# generation equal to a local run, that it maps no writable executable memory (strace:
# MemoryDenyWriteExecute), that the installed gateway finds the installed web UI, that a reinstall
# keeps an edited config, and that purge removes the user, /var/lib/omni and /etc/omni.
# Usage: package_test.sh OMNI SHARED_DIR
set -euo pipefail
omni="$(realpath "$1")"
shared="$(realpath "$2")"
here="$(cd "$(dirname "$0")" && pwd)"
model_name=synth-llama-q8_0.gguf

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

if [ "${PACKAGE_TEST_STAGE:-}" != inside ]; then
  [ "$(id -u)" = 0 ] || skip "needs root (a mount namespace with an overlay of /)"
  for tool in unshare chroot dpkg-deb dpkg-shlibdeps systemd-analyze strip; do
    command -v "$tool" >/dev/null || skip "no $tool (scripts/setup.sh installs dpkg-dev, systemd, binutils)"
  done
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  web=(--no-web)
  [ -f "$here/../web/dist/index.html" ] && web=()
  "$here/../scripts/package.sh" --binary "$omni" --out "$tmp/dist" "${web[@]}" >"$tmp/package.log" 2>&1 ||
    fail "package.sh: $(cat "$tmp/package.log")"
  deb=$(tail -1 "$tmp/package.log")
  echo "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
  unshare --mount --pid --fork --mount-proc true 2>/dev/null || skip "cannot make a mount and PID namespace here"
  PACKAGE_TEST_STAGE=inside PACKAGE_DEB="$deb" PACKAGE_TMP="$tmp" PACKAGE_NO_WEB="${#web[@]}" \
    unshare --mount --pid --fork --mount-proc --propagation private "$0" "$omni" "$shared"
  exit $?
fi

# Inside the namespaces: / stays as it is; the root under test is an overlay whose changes live
# in a tmpfs that goes with the namespace.
tmp="$PACKAGE_TMP"
mkdir -p "$tmp/ovl"
mount -t tmpfs -o size=2g tmpfs "$tmp/ovl"
mkdir -p "$tmp/ovl/upper" "$tmp/ovl/work" "$tmp/ovl/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/ovl/upper,workdir=$tmp/ovl/work" "$tmp/ovl/root" ||
  { echo "SKIP: overlayfs of / is not available here"; exit 77; }
r="$tmp/ovl/root"
mount --bind /proc "$r/proc"
mount --bind /dev "$r/dev"
mkdir -p "$r/srv/models"
mount --bind -o ro "$shared/models" "$r/srv/models"
in_root() { chroot "$r" "$@"; }
cp "$PACKAGE_DEB" "$r/root/omni.deb"
! in_root getent passwd omni >/dev/null || fail "the root under test already has a user omni"
[ ! -e "$r/usr/bin/omni" ] || fail "the root under test already has /usr/bin/omni"

# Install.
in_root dpkg -i /root/omni.deb >"$tmp/install.log" 2>&1 || fail "dpkg -i: $(cat "$tmp/install.log")"
for f in /usr/bin/omni /etc/omni/omni.toml /lib/systemd/system/omni-node.service \
  /lib/systemd/system/omni-gateway.service /lib/systemd/system/omni-relay.service /lib/systemd/system/omni-update.timer \
  /lib/systemd/system/omni-update.service /usr/share/doc/omni/README.Debian; do
  in_root dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the package"
  [ -e "$r$f" ] || fail "$f was not installed"
done
[ "$PACKAGE_NO_WEB" = 1 ] || [ -f "$r/usr/share/omni/web/index.html" ] || fail "the web UI is not in /usr/share/omni/web"
in_root dpkg-query -W -f='${Conffiles}\n' omni | grep -q '/etc/omni/omni.toml' || fail "/etc/omni/omni.toml is no conffile"
IFS=: read -r _ _ uid _ _ home shell <<<"$(in_root getent passwd omni)" || fail "postinst created no user omni"
[ "$home" = /var/lib/omni ] && [ "$shell" = /usr/sbin/nologin ] || fail "user omni: home $home, shell $shell"
sys_uid_max=$(awk '$1 == "SYS_UID_MAX" {print $2}' "$r/etc/login.defs")
[ "$uid" -lt "${sys_uid_max:-1000}" ] || fail "user omni has uid $uid, not a system uid"
[ "$(in_root stat -c '%U:%G %a' /var/lib/omni)" = "omni:omni 750" ] || fail "/var/lib/omni is $(in_root stat -c '%U:%G %a' /var/lib/omni)"
echo "installed: files, conffile, system user omni (uid $uid), /var/lib/omni 750"

# The units, as systemd reads them.
in_root systemd-analyze verify /lib/systemd/system/omni-node.service /lib/systemd/system/omni-gateway.service \
  /lib/systemd/system/omni-relay.service /lib/systemd/system/omni-update.service /lib/systemd/system/omni-update.timer >"$tmp/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
! grep -i "omni" "$tmp/verify.log" || fail "systemd-analyze verify complains about the units"
for unit in node gateway relay; do
  grep -qx "ExecStart=/usr/bin/omni $unit --data-dir /var/lib/omni/$unit" "$r/lib/systemd/system/omni-$unit.service" ||
    fail "omni-$unit.service does not run omni $unit"
done
echo "units: systemd-analyze verify clean"

# The shipped config is valid; a [node] section is read by the installed omni.
in_root omni config check >"$tmp/check.log" 2>&1 || fail "the shipped config: $(cat "$tmp/check.log")"
cat >>"$r/etc/omni/omni.toml" <<TOML

[run]
threads = 1
TOML
n_layer=$(in_root omni inspect "/srv/models/$model_name" --no-tensors | awk '$2 ~ /\.block_count$/ {print $4}')
[ -n "$n_layer" ] || fail "no block_count in $model_name"
sed -i "s|^\[node\]|[node]\nmodel = \"/srv/models/$model_name\"\nblocks = \"0:$n_layer\"\nlisten = \"127.0.0.1:0\"\nthreads = 1|" "$r/etc/omni/omni.toml"
in_root omni config check >"$tmp/check.log" 2>&1 || fail "edited config: $(cat "$tmp/check.log")"

# omni node as omni-node.service runs it: user omni, its state directory, flags from the config,
# traced for writable executable memory.
install -d -m 0700 -o "$uid" -g "$uid" "$r/var/lib/omni/node"
HOME=/var/lib/omni/node chroot --userspec=omni:omni "$r" \
  strace -f -qq -o /var/lib/omni/node/trace -e trace=mmap,mprotect,pkey_mprotect \
  /usr/bin/omni node --data-dir /var/lib/omni/node >"$tmp/node.log" 2>&1 &
node_pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(sed -n 's/^omni node: peer \([a-z2-7]*\) listening on \([^,]*\),.*/\1@\2/p' "$tmp/node.log")
  [ -n "$addr" ] && break
  kill -0 "$node_pid" 2>/dev/null || fail "installed omni node exited: $(cat "$tmp/node.log")"
  sleep 0.1
done
[ -n "$addr" ] || fail "installed omni node did not start: $(cat "$tmp/node.log")"
[ -f "$r/var/lib/omni/node/identity.key" ] || ls "$r/var/lib/omni/node" | grep -q . ||
  fail "the node kept nothing in /var/lib/omni/node"
args=(-m "/srv/models/$model_name" -p "The package test" -n 12 --temp 0 --json -t 1)
in_root omni run "${args[@]}" >"$tmp/local.json" 2>"$tmp/local.err" || fail "local run: $(cat "$tmp/local.err")"
in_root omni run "${args[@]}" --peers "$addr" --hidden-format f32 --data-dir /root/client \
  >"$tmp/remote.json" 2>"$tmp/remote.err" || fail "run through the installed node: $(cat "$tmp/remote.err")"
[ "$(wc -l <"$tmp/local.json")" -ge 1 ] || fail "the local run produced nothing"
cmp -s "$tmp/local.json" "$tmp/remote.json" || fail "the generation through the installed node differs from the local run"
echo "installed omni node (user omni, config from /etc/omni/omni.toml) served a generation equal to the local run"
# Stop the node itself (strace's child); strace then ends with it.
kill "$(pgrep -P "$node_pid")"; wait "$node_pid" 2>/dev/null || true
# MemoryDenyWriteExecute refuses mmap/mprotect with PROT_WRITE and PROT_EXEC together and
# mprotect adding PROT_EXEC; the trace must have neither.
[ -s "$r/var/lib/omni/node/trace" ] || fail "no trace of the node"
if grep -E 'PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE|mprotect\(.*PROT_EXEC' "$r/var/lib/omni/node/trace" >"$tmp/wx"; then
  fail "omni maps writable executable memory (MemoryDenyWriteExecute would stop it): $(head -3 "$tmp/wx")"
fi
echo "no writable executable mapping in $(grep -c . "$r/var/lib/omni/node/trace") traced mmap/mprotect calls"

# The installed gateway finds the installed web UI.
if [ "$PACKAGE_NO_WEB" = 0 ]; then
  install -d -m 0700 -o "$uid" -g "$uid" "$r/var/lib/omni/gateway"
  HOME=/var/lib/omni/gateway chroot --userspec=omni:omni "$r" /usr/bin/omni gateway -m "/srv/models/$model_name" \
    --listen 127.0.0.1:0 -t 1 --data-dir /var/lib/omni/gateway >"$tmp/gateway.log" 2>&1 &
  gw_pid=$!
  url=
  for _ in $(seq 1 300); do
    url=$(sed -n 's|.* on \(http://[0-9.]*:[0-9]*\) .*|\1|p' "$tmp/gateway.log" | head -1)
    [ -n "$url" ] && break
    kill -0 "$gw_pid" 2>/dev/null || fail "installed omni gateway exited: $(cat "$tmp/gateway.log")"
    sleep 0.1
  done
  [ -n "$url" ] || fail "installed omni gateway did not start: $(cat "$tmp/gateway.log")"
  grep -qF "web UI: /usr/share/omni/web" "$tmp/gateway.log" || fail "the gateway did not find the installed web UI: $(cat "$tmp/gateway.log")"
  curl -fsS "$url/" -o "$tmp/index.html" || fail "GET / on the installed gateway failed"
  cmp -s "$tmp/index.html" "$r/usr/share/omni/web/index.html" || fail "GET / is not the installed index.html"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  echo "installed gateway serves /usr/share/omni/web"
fi

# A reinstall keeps the edited conffile; purge removes what postinst made.
in_root dpkg -i --force-confold /root/omni.deb >"$tmp/reinstall.log" 2>&1 || fail "reinstall: $(cat "$tmp/reinstall.log")"
grep -qF "/srv/models/$model_name" "$r/etc/omni/omni.toml" || fail "a reinstall replaced the edited /etc/omni/omni.toml"
in_root dpkg --purge omni >"$tmp/purge.log" 2>&1 || fail "dpkg --purge: $(cat "$tmp/purge.log")"
! in_root getent passwd omni >/dev/null || fail "purge left the user omni"
! in_root getent group omni >/dev/null || fail "purge left the group omni"
for gone in /var/lib/omni /etc/omni /usr/bin/omni /lib/systemd/system/omni-node.service; do
  [ ! -e "$r$gone" ] || fail "purge left $gone"
done
echo "reinstall kept the edited config; purge removed the user, /var/lib/omni, /etc/omni"
echo "package: all checks passed"
