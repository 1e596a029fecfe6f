// The CPU's model name, for benchmark reports (which machine a figure was measured on).
#pragma once

#include <string>

namespace omni::kernels {

// x86-64: the CPUID brand string ("Intel(R) Xeon(R) ..."); Linux AArch64: /proc/cpuinfo's model name,
// or its implementer and part numbers; macOS: the sysctl brand string. "unknown" when the system
// does not say. Leading and trailing blanks trimmed.
std::string cpu_name();

}  // namespace omni::kernels
