#include "swarm/owner_activity.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace omni::swarm {
namespace {

// Whitespace-separated whole numbers of `text`.
std::vector<uint64_t> numbers(std::string_view text) {
  std::vector<uint64_t> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t' && text[j] != '\n') ++j;
    uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(text.data() + i, text.data() + j, v);
    if (j == i || ec != std::errc() || ptr != text.data() + j) break;
    out.push_back(v);
    i = j;
  }
  return out;
}

Result<std::string> slurp(const char* path) {
  std::ifstream in(path);
  if (!in) return Error{ErrorCode::Corruption, std::string("cannot read ") + path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class ProcCpuSource final : public CpuSource {
 public:
  Result<CpuCounters> read() override {
    auto stat = slurp("/proc/stat");
    if (!stat) return stat.error();
    auto self = slurp("/proc/self/stat");
    if (!self) return self.error();
    return parse_cpu_counters(*stat, *self);
  }
};

}  // namespace

std::unique_ptr<CpuSource> proc_cpu_source() { return std::make_unique<ProcCpuSource>(); }

Result<CpuCounters> parse_cpu_counters(std::string_view proc_stat, std::string_view self_stat) {
  // "cpu  user nice system idle iowait irq softirq steal ...": idle and iowait are the idle time.
  if (!proc_stat.starts_with("cpu "))
    return Error{ErrorCode::Corruption, "/proc/stat does not start with the cpu line"};
  const auto cpu = numbers(proc_stat.substr(4, proc_stat.find('\n') - 4));
  if (cpu.size() < 8) return Error{ErrorCode::Corruption, "/proc/stat's cpu line has too few fields"};
  CpuCounters c;
  c.machine_busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7];
  c.machine_total = c.machine_busy + cpu[3] + cpu[4];
  // /proc/self/stat: "pid (comm) state ppid ...": comm may hold spaces and ')', so fields are
  // counted from the last ')'; utime and stime are fields 14 and 15, the 12th and 13th after it.
  const auto close = self_stat.rfind(')');
  if (close == std::string_view::npos) return Error{ErrorCode::Corruption, "/proc/self/stat has no ')'"};
  // After it: state (field 3), ..., utime and stime (fields 14 and 15). Some fields between may
  // be negative (tpgid), so the fields are split first and only those two read as numbers.
  std::vector<std::string_view> fields;
  std::string_view rest = self_stat.substr(close + 1);
  for (size_t i = 0; i < rest.size() && fields.size() < 13;) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\n')) ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j > i) fields.push_back(rest.substr(i, j - i));
    i = j;
  }
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || numbers(fields[11]).size() != 1 || numbers(fields[12]).size() != 1)
    return Error{ErrorCode::Corruption, "/proc/self/stat has too few fields"};
  utime = numbers(fields[11])[0];
  stime = numbers(fields[12])[0];
  c.own = utime + stime;
  return c;
}

OwnerActivity::OwnerActivity(IdlePolicy policy, std::unique_ptr<CpuSource> source)
    : policy_(policy), source_(std::move(source)) {}

Result<OwnerActivity::Step> OwnerActivity::sample(Clock::time_point now) {
  auto read = source_->read();
  if (!read) return read.error();
  Step step;
  const CpuCounters c = *read;
  if (!have_previous_) {
    have_previous_ = true;
    previous_ = c;
    step.busy = busy_;
    return step;
  }
  const uint64_t total = c.machine_total > previous_.machine_total ? c.machine_total - previous_.machine_total : 0;
  const uint64_t busy = c.machine_busy > previous_.machine_busy ? c.machine_busy - previous_.machine_busy : 0;
  const uint64_t own = c.own > previous_.own ? c.own - previous_.own : 0;
  previous_ = c;
  if (total > 0) step.others = std::clamp(static_cast<double>(busy > own ? busy - own : 0) / total, 0.0, 1.0);
  const bool above = step.others > policy_.busy_fraction;
  if (above == busy_) {
    crossing_ = false;
  } else {
    if (!crossing_) {
      crossing_ = true;
      crossing_since_ = now;
    }
    const auto needed = std::chrono::seconds(busy_ ? policy_.idle_for_s : policy_.busy_for_s);
    if (now - crossing_since_ >= needed) {
      busy_ = above;
      crossing_ = false;
      step.changed = true;
    }
  }
  step.busy = busy_;
  return step;
}

}  // namespace omni::swarm
