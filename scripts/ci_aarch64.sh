#!/usr/bin/env bash
# CI for AArch64 on an x86-64 machine: cross-builds the engine layers (base, gguf, kernels, model;
# OMNI_ENGINE_ONLY) with Debian's g++-aarch64-linux-gnu and runs their tests under qemu-aarch64
# with `-cpu max` (NEON, dotprod and i8mm). qemu runs them many times slower than the host,
# so this runs what the port can break, not the whole suite:
#  - the kernel tests: every level the CPU has (neon, dotprod, i8mm) against the scalar reference
#    bit for bit, real model weights against an independent reference, activation quantizers;
#    then, with each level in turn set by OMNI_KERNELS, the F16-row tests and the check
#    that the setting took effect. (Left out: matmul's split, batching and allocation tests and the
#    quantizer tests on whole shared models: portable code, run on the host; the thread pool test,
#    since qemu on an x86-64 host keeps x86's stronger memory order and so proves nothing about
#    AArch64's, and it crawled under emulation on a loaded host.)
#  - the model: logits of 10 models (every architecture and weight-type family) equal, bit for bit,
#    to those the host's build computes (cross_cpu_test); the host's build passes the llama.cpp
#    reference tests with those bits. (The reference tests themselves synthesize or run too much
#    for emulation: one tiny-shape case did not finish its synthesis in 13 minutes.)
# Usage: scripts/ci_aarch64.sh [SHARED_DIR]  (default ../shared). Builds into build-aarch64/; the
# host's digests come from build/ (scripts/setup.sh configures it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=$(realpath "${1:-$root/../shared}")
build=$root/build-aarch64
toolchain=$root/cmake/aarch64-linux-gnu.cmake
qemu=(qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu)

for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "ci_aarch64: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

echo "== aarch64: googletest for the target (Debian ships its sources, /usr/src/googletest) =="
gtest=$build/googletest
if [ ! -f "$gtest/install/lib/cmake/GTest/GTestConfig.cmake" ]; then
  cmake -S /usr/src/googletest -B "$gtest/build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$gtest/install" "${launcher[@]}" >/dev/null
  cmake --build "$gtest/build"
  cmake --install "$gtest/build" >/dev/null
fi

echo "== aarch64: cross build of base, gguf, kernels, model (warnings are errors) =="
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DOMNI_ENGINE_ONLY=ON -DOMNI_FUZZ=OFF -DOMNI_WERROR=ON -DOMNI_SHARED_DIR="$shared" \
  -DGTest_DIR="$gtest/install/lib/cmake/GTest" "${launcher[@]}" >/dev/null
cmake --build "$build" --target matmul_test kernels_test f16_rows_test cross_cpu_test

run() {  # run LEVEL BINARY [gtest args]: the binary under qemu, its level capped at LEVEL (or none)
  local level=$1 bin=$2
  shift 2
  echo "-- ${bin##*/} ${level:+(OMNI_KERNELS=$level)} $*"
  OMNI_KERNELS=$level "${qemu[@]}" "$bin" --gtest_brief=1 "$@"
}
k=$build/src/kernels
m=$build/src/model

echo "== aarch64: kernel tests under qemu =="
run "" "$k/matmul_test" \
  --gtest_filter='AllTypes/MatmulTypes.SimdLevelsMatchScalar/*:MatmulActivations.*:MatmulSharedModels.*'
run "" "$k/kernels_test" --gtest_filter='-Llama/QuantSharedModels.*:*DeathTest.*'  # death tests' forked children did not finish under qemu-user
for level in scalar neon dotprod i8mm; do
  run "$level" "$k/matmul_test" --gtest_filter='MatmulSimdLevel.*'
  run "$level" "$k/f16_rows_test"
done

echo "== aarch64: model tests under qemu =="
# The host's digests, and the tiny models synthesized once (natively) for both runs.
digests=$build/host-logits-digests.txt
export OMNI_CROSS_CPU_MODELS=$build/cross-cpu-models
rm -rf "$digests" "$OMNI_CROSS_CPU_MODELS"
mkdir -p "$OMNI_CROSS_CPU_MODELS"
cmake --build "$root/build" --target cross_cpu_test >/dev/null
OMNI_LOGITS_DIGESTS_OUT=$digests "$root/build/src/model/cross_cpu_test" --gtest_brief=1
OMNI_LOGITS_DIGESTS=$digests run i8mm "$m/cross_cpu_test"
echo "== aarch64: all passed =="
