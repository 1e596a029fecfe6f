// OwnerActivity: whether the machine's own user is busy, for a node that serves only while the
// machine is otherwise idle (`omni node --when-idle`). Busy means: the CPU time that processes
// other than this one used, as a fraction of all the machine's CPU time, stayed above
// busy_fraction for busy_for_s seconds; idle again after it stayed at or below it for idle_for_s.
// Input activity (keyboards, mice) is not watched: /dev/input needs root and logind's idle hint
// needs D-Bus, neither of which the node has under its service sandbox.
//
// The counters come through a CpuSource, so that tests feed their own (proc_cpu_source() reads
// /proc/stat and /proc/self/stat). Not thread-safe: one caller samples.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "base/result.h"

namespace omni::swarm {

// Cumulative CPU time in clock ticks: the machine's busy and total time over all CPUs, and this
// process's own (user + system).
struct CpuCounters {
  uint64_t machine_busy = 0;
  uint64_t machine_total = 0;
  uint64_t own = 0;
};

class CpuSource {
 public:
  virtual ~CpuSource() = default;
  virtual Result<CpuCounters> read() = 0;
};

// /proc/stat's "cpu" line and /proc/self/stat. Errors: unreadable or malformed (Corruption).
std::unique_ptr<CpuSource> proc_cpu_source();
// The parsing, on the two files' text.
Result<CpuCounters> parse_cpu_counters(std::string_view proc_stat, std::string_view self_stat);

struct IdlePolicy {
  double busy_fraction = 0.5;  // others' share of all CPU time above which the owner is busy
  uint32_t busy_for_s = 5;     // ... for this long: pause
  uint32_t idle_for_s = 30;    // at or below it this long: resume
};

class OwnerActivity {
 public:
  using Clock = std::chrono::steady_clock;
  OwnerActivity(IdlePolicy policy, std::unique_ptr<CpuSource> source);

  struct Step {
    bool busy = false;      // the state after this sample
    bool changed = false;   // this sample changed it
    double others = 0;      // others' share of the CPU time since the previous sample (0..1)
  };
  // Reads the source at `now` (the first call only sets the baseline: not busy, others 0).
  Result<Step> sample(Clock::time_point now);
  bool busy() const { return busy_; }

 private:
  IdlePolicy policy_;
  std::unique_ptr<CpuSource> source_;
  bool have_previous_ = false;
  CpuCounters previous_;
  bool busy_ = false;
  bool crossing_ = false;             // the load is on the other side of the threshold than busy_ says
  Clock::time_point crossing_since_;  // since when
};

}  // namespace omni::swarm
