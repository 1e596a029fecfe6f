#include "gateway/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace omni::gateway {
namespace {

// The shortest %g form that parses back to `v` (0.05 rather than 0.050000000000000003): bucket
// labels are matched as strings by people and dashboards.
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char b[40];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(b, sizeof b, "%.*g", precision, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, double value) {
  out += name;
  out += ' ';
  out += number(value);
  out += '\n';
}

}  // namespace

std::string prometheus_escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();  // le: value <= bound
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, std::string_view name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name;
    out += "_bucket{le=\"";
    out += i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += "\"} ";
    out += std::to_string(cumulative);
    out += '\n';
  }
  out += name;
  out += "_sum " + number(sum_) + "\n";
  out += name;
  out += "_count " + std::to_string(count_) + "\n";
}

double Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const double rank = q * static_cast<double>(count_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    const uint64_t before = cumulative;
    cumulative += counts_[i];
    if (static_cast<double>(cumulative) >= rank && counts_[i] > 0) {
      if (i == bounds_.size()) return bounds_.empty() ? 0 : bounds_.back();  // in +Inf: the last finite bound
      const double lo = i == 0 ? 0.0 : bounds_[i - 1];
      const double fraction = (rank - static_cast<double>(before)) / static_cast<double>(counts_[i]);
      return lo + (bounds_[i] - lo) * std::clamp(fraction, 0.0, 1.0);
    }
  }
  return bounds_.empty() ? 0 : bounds_.back();
}

Metrics::Metrics()
    // Time to first token spans queueing and prompt processing: milliseconds to a minute.
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      duration_({0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {}

void Metrics::count_request(std::string_view route, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(route), status}];
}

void Metrics::add_generated_tokens(uint64_t n) {
  std::lock_guard lock(mutex_);
  generated_tokens_ += n;
}

void Metrics::add_prompt_tokens(uint64_t n) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += n;
}

void Metrics::count_cancelled() {
  std::lock_guard lock(mutex_);
  ++cancelled_;
}

void Metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::observe_request_duration(double seconds) {
  std::lock_guard lock(mutex_);
  duration_.observe(seconds);
}

uint64_t Metrics::requests(std::string_view route, int status) const {
  std::lock_guard lock(mutex_);
  auto it = requests_.find({std::string(route), status});
  return it == requests_.end() ? 0 : it->second;
}

uint64_t Metrics::generated_tokens() const {
  std::lock_guard lock(mutex_);
  return generated_tokens_;
}

std::string Metrics::render_prometheus(const LiveGauges& gauges) const {
  std::lock_guard lock(mutex_);
  std::string out;
  header(out, "omni_gateway_requests_total", "counter", "HTTP requests answered, by route and status code.");
  for (const auto& [key, n] : requests_) {
    out += "omni_gateway_requests_total{route=\"" + prometheus_escape(key.first) + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  header(out, "omni_gateway_generated_tokens_total", "counter", "Tokens generated for clients.");
  sample(out, "omni_gateway_generated_tokens_total", static_cast<double>(generated_tokens_));
  header(out, "omni_gateway_prompt_tokens_total", "counter", "Prompt tokens processed.");
  sample(out, "omni_gateway_prompt_tokens_total", static_cast<double>(prompt_tokens_));
  header(out, "omni_gateway_cancelled_total", "counter", "Generations cancelled because the client went away.");
  sample(out, "omni_gateway_cancelled_total", static_cast<double>(cancelled_));
  header(out, "omni_gateway_tokens_per_second", "gauge", "Tokens generated per second over the last 10 seconds.");
  sample(out, "omni_gateway_tokens_per_second", gauges.tokens_per_second);
  header(out, "omni_gateway_queue_depth", "gauge", "Requests waiting for a session.");
  sample(out, "omni_gateway_queue_depth", static_cast<double>(gauges.queue_depth));
  header(out, "omni_gateway_active_sessions", "gauge", "Sessions generating now.");
  sample(out, "omni_gateway_active_sessions", static_cast<double>(gauges.active_sessions));
  header(out, "omni_gateway_time_to_first_token_seconds", "histogram",
         "Time from a request's arrival to its first generated token.");
  ttft_.render(out, "omni_gateway_time_to_first_token_seconds");
  header(out, "omni_gateway_request_duration_seconds", "histogram",
         "Time from a generation request's arrival to its last token.");
  duration_.render(out, "omni_gateway_request_duration_seconds");
  return out;
}

}  // namespace omni::gateway
