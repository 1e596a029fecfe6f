// Metrics: the gateway's counters, gauges and histograms, rendered in the Prometheus text
// exposition format (version 0.0.4) for GET /metrics.
//
//   omni_gateway_requests_total{route,status}          counter
//   omni_gateway_generated_tokens_total                counter
//   omni_gateway_prompt_tokens_total                   counter
//   omni_gateway_cancelled_total                       counter (client went away mid-generation)
//   omni_gateway_tokens_per_second                     gauge (generated, over the last 10 s)
//   omni_gateway_queue_depth, omni_gateway_active_sessions   gauges (read when rendered)
//   omni_gateway_time_to_first_token_seconds           histogram
//   omni_gateway_request_duration_seconds              histogram
//
// Thread-safe; recording is a short critical section, rendering copies under the lock.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omni::gateway {

// A Prometheus histogram: cumulative bucket counts for upper bounds, plus sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
  void observe(double value);
  // Appends the _bucket, _sum and _count lines for metric `name`.
  void render(std::string& out, std::string_view name) const;
  uint64_t count() const { return count_; }
  // The value below which `q` (0..1) of the observations fall, interpolated within its bucket
  // (as Prometheus' histogram_quantile); 0 when empty.
  double quantile(double q) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct LiveGauges {
  double tokens_per_second = 0;
  size_t queue_depth = 0;
  size_t active_sessions = 0;
};

class Metrics {
 public:
  Metrics();

  void count_request(std::string_view route, int status);
  void add_generated_tokens(uint64_t n);
  void add_prompt_tokens(uint64_t n);
  void count_cancelled();
  void observe_time_to_first_token(double seconds);
  void observe_request_duration(double seconds);

  std::string render_prometheus(const LiveGauges& gauges) const;

  uint64_t requests(std::string_view route, int status) const;
  uint64_t generated_tokens() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t generated_tokens_ = 0;
  uint64_t prompt_tokens_ = 0;
  uint64_t cancelled_ = 0;
  Histogram ttft_;
  Histogram duration_;
};

// A label value with \, " and line feeds escaped as the text format requires.
std::string prometheus_escape(std::string_view value);

}  // namespace omni::gateway
