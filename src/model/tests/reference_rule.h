// The comparison rule of ../shared/README.md, shared by the tests that hold the engine against
// recorded greedy steps of an independent implementation (reference_test: ../shared/reference;
// arch_reference_test: tests/data/reference): which steps count, the log-prob tolerance per weight
// type, and the log-softmax both sides are compared in.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace omni::model::test_support {

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// In double: the reference's log-probs are compared to 1e-3 and finer.
inline std::vector<double> log_softmax(const std::vector<float>& logits) {
  double max = logits[0];
  for (float v : logits) max = std::max(max, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(v - max);
  const double log_sum = std::log(sum) + max;
  std::vector<double> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - log_sum;
  return out;
}

// Tolerance on log-probs by weight type ("f16", "q8_0", "q4_k_m", ...).
inline double logprob_tolerance(const std::string& type) {
  if (type == "f16" || type == "q8_0" || type == "f32" || type == "bf16") return 1e-3;
  if (type == "q6_k") return 1e-2;
  return 2e-2;
}

// Whether a recorded step counts: below this margin between the reference's top-1 and top-2
// log-probs, rounding may legitimately flip the argmax, and the prompt's comparison stops.
inline bool step_counts(const nlohmann::json& step) {
  return step["top"][0][1].get<double>() - step["top"][1][1].get<double>() > 0.05;
}

}  // namespace omni::model::test_support
