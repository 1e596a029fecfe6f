#!/usr/bin/env bash
# Installs OmniNode's build dependencies (Debian 12 packages) and builds everything into build/.
# Extra CMake arguments can be passed in OMNI_CMAKE_ARGS (e.g. -DOMNI_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev            # second compiler; libFuzzer and sanitizers
  libgtest-dev libgmock-dev           # tests
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev libpcre2-dev
  capnproto libcapnp-dev libssl-dev   # wire protocol (Cap'n Proto RPC over kj-tls / OpenSSL)
  libopendht-dev                      # swarm directory (OpenDHT DHT)
  libsqlite3-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# shellcheck disable=SC2086
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${OMNI_CMAKE_ARGS:-}
cmake --build build
