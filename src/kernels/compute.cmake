# Compute kernels: thread pool, f32 row ops, quantized matrix multiplication.
target_sources(omni_kernels PRIVATE
  thread_pool.cpp
  cpu_name.cpp
  ops.cpp
  f16_rows.cpp
  matmul.cpp
  activation_quant.cpp
  dot_scalar.cpp
)
# The reference activation quantizers and scalar dot products compute exactly the float operations
# written (no fused multiply-adds, whatever -march says): they are the oracle for the SIMD paths.
set_source_files_properties(activation_quant.cpp dot_scalar.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)

# SIMD kernels: each file is compiled for its instruction set and only called after matmul.cpp's
# CPU check, so the rest of the program stays baseline x86-64 (or ARMv8-A).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  target_sources(omni_kernels PRIVATE dot_avx2.cpp dot_avx512.cpp)
  set(omni_avx2_flags -mavx2 -mfma -mf16c)
  set(omni_avx512_flags ${omni_avx2_flags} -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni)
  set_source_files_properties(dot_avx2.cpp PROPERTIES COMPILE_OPTIONS "${omni_avx2_flags}")
  set_source_files_properties(dot_avx512.cpp PROPERTIES COMPILE_OPTIONS "${omni_avx512_flags}")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # Base NEON (every AArch64 CPU), then the dot product and int8 matrix multiply extensions. The
  # -march levels name only what each file needs, so GCC and (Apple) clang both accept them.
  target_sources(omni_kernels PRIVATE dot_neon.cpp dot_neon_dotprod.cpp dot_neon_i8mm.cpp)
  set_source_files_properties(dot_neon_dotprod.cpp PROPERTIES COMPILE_OPTIONS -march=armv8.2-a+dotprod)
  set_source_files_properties(dot_neon_i8mm.cpp PROPERTIES COMPILE_OPTIONS -march=armv8.2-a+dotprod+i8mm)
endif()

if(OMNI_BUILD_TESTS)
  omni_add_test(matmul_test SOURCES tests/matmul_test.cpp ${OMNI_ALLOCATION_COUNTER} LIBS omni_kernels)
  omni_add_test(f16_rows_test SOURCES tests/f16_rows_test.cpp LIBS omni_kernels)
  omni_add_test(thread_pool_test SOURCES tests/thread_pool_test.cpp LIBS omni_kernels)
endif()
