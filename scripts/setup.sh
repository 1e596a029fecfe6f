#!/usr/bin/env bash
# Installs OmniNode's build dependencies (Debian 12 packages) and builds everything into build/.
# Extra CMake arguments can be passed in OMNI_CMAKE_ARGS (e.g. -DOMNI_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
packages=(
  build-essential cmake ninja-build pkg-config git
  python3 curl                        # hostile-client tests (tests/security) speak raw HTTP and sockets
  ccache                              # rebuilds of the same sources (CI on a developer's machine) hit a cache
  clang libclang-rt-14-dev            # second compiler; libFuzzer and sanitizers
  libgtest-dev libgmock-dev           # tests
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev libpcre2-dev
  capnproto libcapnp-dev libssl-dev   # wire protocol (Cap'n Proto RPC over kj-tls / OpenSSL)
  libopendht-dev                      # swarm directory (OpenDHT DHT)
  libsqlite3-dev
  libminiupnpc-dev libnatpmp-dev      # a node's port mapping on home routers (UPnP-IGD, NAT-PMP)
  miniupnpd-nftables nftables         # the UPnP test's router in a network namespace
  libcpp-httplib-dev                  # gateway HTTP server (src/gateway)
  libcurl4-openssl-dev                # model downloads from http(s) URLs and hf: names (src/store)
  chromium                            # gateway browser test (playwright-core)
  dpkg-dev systemd strace procps     # the package test: dpkg-shlibdeps, systemd-analyze verify, the W^X trace
  g++-aarch64-linux-gnu qemu-user     # AArch64 cross build of the engine, tested under emulation
  libc6-dev-arm64-cross               #   (scripts/ci_aarch64.sh)
  libpcre2-dev:arm64                  #   the tokenizers' regex library for the target (multiarch)
  golang-go                           # docs/api.md's Go examples, run by the api_docs test
)
# libpcre2-dev:arm64 needs arm64 as a foreign architecture of dpkg.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The web UI (web/, served by omni gateway) and the gateway tests' node clients. Debian's nodejs/npm
# when no node is installed.
if ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends nodejs npm
fi
# npm ci installs exactly package-lock.json; where the registry (a filtering mirror) lacks the other
# platforms' optional builds that the lock must list for npm ci's sync check, the same pinned
# versions are installed with npm install --no-save (the lock file is left untouched).
(cd web && { npm ci --no-audit --no-fund || npm install --no-save --no-audit --no-fund; } && npm run build)

# ccache keys on paths relative to the checkout, so a fresh clone elsewhere still hits the cache.
launcher=""
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  launcher="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
# shellcheck disable=SC2086
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $launcher ${OMNI_CMAKE_ARGS:-}
cmake --build build
