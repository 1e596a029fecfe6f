#include "kernels/cpu_name.h"

#include <cstring>
#include <fstream>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
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

}  // namespace omni::kernels
