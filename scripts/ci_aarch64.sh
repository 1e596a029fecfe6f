#!/usr/bin/env bash
# CI for AArch64 on an x86-64 machine: cross-builds the engine layers (base, gguf, kernels, model;
# OMNI_ENGINE_ONLY) with Debian's g++-aarch64-linux-gnu and runs their tests under qemu-aarch64
# with `-cpu max` (NEON, dotprod and i8mm):
#  - the kernel tests, whose SIMD tests compare every level the CPU has (neon, dotprod, i8mm) with
#    the scalar reference bit for bit, and, once per level capped by OMNI_KERNELS, the tests that
#    use the automatic level (the F16-row dots and matmul's check that the cap took effect);
#  - the model reference tests (outputs against ../shared/reference and tests/data/reference) at
#    the best level, and whole models' logits at every level against the scalar path's bits.
# Usage: scripts/ci_aarch64.sh [SHARED_DIR]  (default ../shared). Builds into build-aarch64/.
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
kernel_tests=(matmul_test kernels_test f16_rows_test thread_pool_test)
model_tests=(reference_test arch_reference_test engine_test differential_reference_test)
cmake --build "$build" --target "${kernel_tests[@]}" "${model_tests[@]}"

run() {  # run LEVEL BINARY [gtest args]: the binary under qemu, its level capped at LEVEL (or none)
  local level=$1 bin=$2
  shift 2
  echo "-- ${bin##*/} ${level:+(OMNI_KERNELS=$level)} $*"
  OMNI_KERNELS=$level "${qemu[@]}" "$bin" --gtest_brief=1 "$@"
}
k=$build/src/kernels
m=$build/src/model

echo "== aarch64: kernel tests under qemu =="
for t in "${kernel_tests[@]}"; do run "" "$k/$t"; done
for level in scalar neon dotprod i8mm; do
  run "$level" "$k/matmul_test" --gtest_filter='MatmulSimdLevel.*'
  run "$level" "$k/f16_rows_test"
done

echo "== aarch64: model reference tests under qemu =="
run "" "$m/reference_test"
run "" "$m/arch_reference_test"
run "" "$m/engine_test"
run "" "$m/differential_reference_test" --gtest_filter='RandomShapes/SimdIndependence.*'
echo "== aarch64: all passed =="
