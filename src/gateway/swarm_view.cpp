#include "gateway/swarm_view.h"

#include <algorithm>

namespace omni::gateway {
namespace {

int64_t unix_second(ThroughputHistory::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

void compute_coverage(SwarmSnapshot& snapshot) {
  for (SwarmModel& m : snapshot.models) {
    m.coverage.assign(m.n_layer, 0);
    for (const SwarmNode& n : snapshot.nodes) {
      if (n.model != m.name || !n.alive) continue;
      for (uint32_t b = n.block_begin; b < std::min(n.block_end, m.n_layer); ++b) ++m.coverage[b];
    }
  }
}

std::vector<uint32_t> SwarmModel::missing() const {
  std::vector<uint32_t> out;
  for (uint32_t b = 0; b < coverage.size(); ++b)
    if (coverage[b] == 0) out.push_back(b);
  return out;
}

std::string describe_blocks(const std::vector<uint32_t>& blocks) {
  std::vector<std::string> runs;
  for (size_t i = 0; i < blocks.size();) {
    size_t j = i;
    while (j + 1 < blocks.size() && blocks[j + 1] == blocks[j] + 1) ++j;
    runs.push_back(j == i ? std::to_string(blocks[i]) : std::to_string(blocks[i]) + "-" + std::to_string(blocks[j]));
    i = j + 1;
  }
  std::string out = blocks.size() == 1 ? "block " : "blocks ";
  for (size_t i = 0; i < runs.size(); ++i) out += (i == 0 ? "" : i + 1 == runs.size() ? " and " : ", ") + runs[i];
  return out;
}

ThroughputHistory::ThroughputHistory(size_t seconds_kept, Clock::time_point start)
    : seconds_kept_(seconds_kept), start_second_(unix_second(start)) {}

void ThroughputHistory::advance(int64_t second) {
  if (per_second_.empty()) {
    per_second_.push_back(0);
    last_second_ = second;
    return;
  }
  if (second <= last_second_) return;  // the clock went back, or the same second
  const int64_t gap = std::min<int64_t>(second - last_second_, static_cast<int64_t>(seconds_kept_));
  for (int64_t i = 0; i < gap; ++i) per_second_.push_back(0);
  last_second_ = second;
  while (per_second_.size() > seconds_kept_) per_second_.pop_front();
}

void ThroughputHistory::record(uint64_t tokens, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  advance(unix_second(now));
  per_second_.back() += tokens;
}

double ThroughputHistory::tokens_per_second(int window_s, Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  const int64_t current = unix_second(now);
  uint64_t sum = 0;
  // Whole seconds [current - window_s, current): the current second is still filling.
  for (int64_t s = current - window_s; s < current; ++s) {
    const int64_t back = last_second_ - s;  // 0 = the newest bucket
    if (per_second_.empty() || back < 0 || back >= static_cast<int64_t>(per_second_.size())) continue;
    sum += per_second_[per_second_.size() - 1 - static_cast<size_t>(back)];
  }
  return window_s > 0 ? static_cast<double>(sum) / window_s : 0.0;
}

std::vector<ThroughputHistory::Point> ThroughputHistory::history(int point_seconds, Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  std::vector<Point> points;
  if (point_seconds <= 0) return points;
  const int64_t current = unix_second(now);
  const int64_t first = std::max(current - static_cast<int64_t>(seconds_kept_), start_second_);
  // Points end at whole multiples of point_seconds, so successive calls give the same points.
  int64_t end = current - current % point_seconds;
  std::vector<Point> reversed;
  for (; end - point_seconds >= first; end -= point_seconds) {
    uint64_t sum = 0;
    for (int64_t s = end - point_seconds; s < end; ++s) {
      const int64_t back = last_second_ - s;
      if (per_second_.empty() || back < 0 || back >= static_cast<int64_t>(per_second_.size())) continue;
      sum += per_second_[per_second_.size() - 1 - static_cast<size_t>(back)];
    }
    reversed.push_back({end, static_cast<double>(sum) / point_seconds});
  }
  points.assign(reversed.rbegin(), reversed.rend());
  return points;
}

nlohmann::json to_json(const SwarmSnapshot& snapshot, const std::vector<ThroughputHistory::Point>& history) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const SwarmNode& n : snapshot.nodes) {
    nodes.push_back({{"peer_id", n.peer_id},
                     {"address", n.address},
                     {"model", n.model},
                     {"blocks", {n.block_begin, n.block_end}},
                     {"throughput_tps", n.throughput_tps},
                     {"sessions", n.sessions},
                     {"max_sessions", n.max_sessions},
                     {"route", n.route},
                     {"alive", n.alive},
                     {"rtt_ms", n.rtt_ms},
                     {"reputation", n.reputation},
                     {"excluded", n.excluded_reason.empty()
                                      ? nlohmann::json(nullptr)
                                      : nlohmann::json{{"reason", n.excluded_reason}, {"since", n.excluded_since}}}});
  }
  nlohmann::json models = nlohmann::json::array();
  for (const SwarmModel& m : snapshot.models)
    models.push_back({{"name", m.name},
                      {"cid", m.cid},
                      {"n_layer", m.n_layer},
                      {"coverage", m.coverage},
                      {"missing", m.missing()}});
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : history) points.push_back({{"t", p.unix_s}, {"tps", p.tps}});
  return {{"nodes", std::move(nodes)},
          {"models", std::move(models)},
          {"throughput_history", std::move(points)},
          {"updated_at", unix_second(ThroughputHistory::Clock::now())}};
}

}  // namespace omni::gateway
