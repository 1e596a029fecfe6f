#include "kernels/cpu_name.h"

#include <cstring>
#include <fstream>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace omni::kernels {
namespace {

std::string trimmed(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

#if defined(__linux__) && !defined(__x86_64__)
// The value of the first "key : value" line of /proc/cpuinfo with this key.
std::string cpuinfo_value(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon != std::string::npos && trimmed(line.substr(0, colon)) == key) return trimmed(line.substr(colon + 1));
  }
  return {};
}
#endif

}  // namespace

std::string cpu_name() {
  std::string name;
#if defined(__x86_64__)
  unsigned regs[12] = {};
  unsigned max_leaf = __get_cpuid_max(0x80000000u, nullptr);
  if (max_leaf >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    char brand[49] = {};
    std::memcpy(brand, regs, 48);
    name = brand;
  }
#elif defined(__APPLE__)
  char brand[256] = {};
  size_t size = sizeof brand - 1;
  if (sysctlbyname("machdep.cpu.brand_string", brand, &size, nullptr, 0) == 0) name = brand;
#elif defined(__linux__)
  name = cpuinfo_value("model name");
  if (name.empty()) {
    const std::string implementer = cpuinfo_value("CPU implementer"), part = cpuinfo_value("CPU part");
    if (!implementer.empty()) name = "implementer " + implementer + " part " + part;
  }
#endif
  name = trimmed(name);
  return name.empty() ? "unknown" : name;
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> out;
#if defined(__x86_64__)
  __builtin_cpu_init();
  // F16C is not among __builtin_cpu_supports' names in every compiler: CPUID leaf 1, ECX.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
  if (__builtin_cpu_supports("avx2")) out.emplace_back("avx2");
  if (__builtin_cpu_supports("fma")) out.emplace_back("fma");
  if (f16c) out.emplace_back("f16c");
  if (__builtin_cpu_supports("avx512f")) out.emplace_back("avx512f");
  if (__builtin_cpu_supports("avx512bw")) out.emplace_back("avx512bw");
  if (__builtin_cpu_supports("avx512vl")) out.emplace_back("avx512vl");
  if (__builtin_cpu_supports("avx512dq")) out.emplace_back("avx512dq");
  if (__builtin_cpu_supports("avx512vnni")) out.emplace_back("avx512_vnni");
  if (__builtin_cpu_supports("avx512bf16")) out.emplace_back("avx512_bf16");
#elif defined(__aarch64__) && defined(__linux__)
  // The HWCAP bits of the Linux AArch64 ABI (older headers lack HWCAP2_I8MM).
  constexpr unsigned long kAsimd = 1ul << 1, kAsimdDp = 1ul << 20, kI8mm2 = 1ul << 13;
  if (getauxval(AT_HWCAP) & kAsimd) out.emplace_back("asimd");
  if (getauxval(AT_HWCAP) & kAsimdDp) out.emplace_back("asimddp");
  if (getauxval(AT_HWCAP2) & kI8mm2) out.emplace_back("i8mm");
#elif defined(__aarch64__) && defined(__APPLE__)
  const auto has = [](const char* feature) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(feature, &value, &size, nullptr, 0) == 0 && value != 0;
  };
  out.emplace_back("asimd");
  if (has("hw.optional.arm.FEAT_DotProd")) out.emplace_back("asimddp");
  if (has("hw.optional.arm.FEAT_I8MM")) out.emplace_back("i8mm");
#endif
  return out;
}

}  // namespace omni::kernels
