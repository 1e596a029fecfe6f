// The CPU's model name, for benchmark reports (which machine a figure was measured on), and the
// instruction-set features the kernel choice depends on (omni doctor).
#pragma once

#include <string>
#include <vector>

namespace omni::kernels {

// x86-64: the CPUID brand string ("Intel(R) Xeon(R) ..."); Linux AArch64: /proc/cpuinfo's model name,
// or its implementer and part numbers; macOS: the sysctl brand string. "unknown" when the system
// does not say. Leading and trailing blanks trimmed.
std::string cpu_name();

// The features this CPU has among those the kernel levels need (matmul.h's simd_level), named as
// Linux's /proc/cpuinfo names them: x86-64 "avx2", "fma", "f16c", "avx512f", "avx512bw",
// "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"; AArch64 "asimd", "asimddp", "i8mm". What the
// CPU has, not what OMNI_KERNELS allows: simd_level() says which set runs.
std::vector<std::string> cpu_features();

}  // namespace omni::kernels
