#include "gateway/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <regex>
#include <sstream>

namespace omni::gateway {
namespace {

// Checks `text` against the Prometheus text format (0.0.4) and returns its samples by series
// ("name{labels}"): every line is a # HELP / # TYPE comment or "name[{label="value",...}] number";
// each metric's TYPE comes before its samples; histogram buckets are cumulative, end in +Inf,
// and +Inf equals _count.
std::map<std::string, double> parse_exposition(const std::string& text) {
  static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)$)");
  static const std::regex kComment(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$)");
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kComment)) {
      if (m[1] == "TYPE") types[m[2]] = m[3];
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, m, kSample)) << "not a sample line: " << line;
    if (m.empty()) continue;
    std::string name = m[1];
    std::string base = std::regex_replace(name, std::regex("_(bucket|sum|count)$"), "");
    EXPECT_TRUE(types.count(name) || (types.count(base) && types[base] == "histogram")) << "no TYPE before " << name;
    const std::string value = m[5];
    double v = value == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(value);
    samples[name + m[2].str()] = v;
  }
  return samples;
}

TEST(Metrics, RendersValidExpositionWithCountsAndGauges) {
  Metrics m;
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 429);
  m.count_request("weird\"route\\\n", 404);
  m.add_generated_tokens(40);
  m.add_generated_tokens(2);
  m.add_prompt_tokens(7);
  m.count_cancelled();
  m.observe_time_to_first_token(0.03);
  m.observe_time_to_first_token(0.2);
  m.observe_time_to_first_token(100);  // beyond every bound: only +Inf
  m.observe_request_duration(1.5);
  auto s = parse_exposition(m.render_prometheus({12.5, 3, 2}));
  EXPECT_EQ(s[R"(omni_gateway_requests_total{route="/v1/chat/completions",status="200"})"], 2);
  EXPECT_EQ(s[R"(omni_gateway_requests_total{route="/v1/chat/completions",status="429"})"], 1);
  EXPECT_EQ(s[R"(omni_gateway_requests_total{route="weird\"route\\\n",status="404"})"], 1);
  EXPECT_EQ(s["omni_gateway_generated_tokens_total"], 42);
  EXPECT_EQ(s["omni_gateway_prompt_tokens_total"], 7);
  EXPECT_EQ(s["omni_gateway_cancelled_total"], 1);
  EXPECT_EQ(s["omni_gateway_tokens_per_second"], 12.5);
  EXPECT_EQ(s["omni_gateway_queue_depth"], 3);
  EXPECT_EQ(s["omni_gateway_active_sessions"], 2);
  const std::string h = "omni_gateway_time_to_first_token_seconds";
  EXPECT_EQ(s[h + R"(_bucket{le="0.025"})"], 0);
  EXPECT_EQ(s[h + R"(_bucket{le="0.05"})"], 1);
  EXPECT_EQ(s[h + R"(_bucket{le="0.25"})"], 2);
  EXPECT_EQ(s[h + R"(_bucket{le="60"})"], 2);
  EXPECT_EQ(s[h + R"(_bucket{le="+Inf"})"], 3);
  EXPECT_EQ(s[h + "_count"], 3);
  EXPECT_DOUBLE_EQ(s[h + "_sum"], 100.23);
  EXPECT_EQ(s[R"(omni_gateway_request_duration_seconds_bucket{le="2.5"})"], 1);
  EXPECT_EQ(m.requests("/v1/chat/completions", 200), 2u);
  EXPECT_EQ(m.generated_tokens(), 42u);
}

TEST(Metrics, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram h({1, 2, 4});
  h.observe(1);  // le="1" includes 1
  h.observe(1.5);
  h.observe(4);
  h.observe(9);
  std::string out = "# TYPE x histogram\n";
  h.render(out, "x");
  auto s = parse_exposition(out);
  EXPECT_EQ(s[R"(x_bucket{le="1"})"], 1);
  EXPECT_EQ(s[R"(x_bucket{le="2"})"], 2);
  EXPECT_EQ(s[R"(x_bucket{le="4"})"], 3);
  EXPECT_EQ(s[R"(x_bucket{le="+Inf"})"], 4);
  EXPECT_EQ(s["x_count"], 4);
  EXPECT_EQ(s["x_sum"], 15.5);
}

TEST(Metrics, QuantilesInterpolateWithinBuckets) {
  Histogram h({1, 2, 4});
  EXPECT_EQ(h.quantile(0.5), 0);
  for (int i = 0; i < 10; ++i) h.observe(1.5);  // all in (1, 2]
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 1.5);
  EXPECT_DOUBLE_EQ(h.quantile(1.0), 2.0);
}

TEST(Metrics, EscapesLabelValues) { EXPECT_EQ(prometheus_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd"); }

}  // namespace
}  // namespace omni::gateway
