// The comparison rule of ../shared/README.md, shared by the tests that hold the engine against
// recorded greedy steps of an independent implementation (reference_test: ../shared/reference;
// arch_reference_test: tests/data/reference; differential_reference_test: its differential/
// folder): which steps count, the log-prob tolerance per weight type, and the log-softmax both
// sides are compared in; and, for the references of synthetic models, how to find them and how to
// make the model a reference describes.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/shapes.h"
#include "model/synth.h"

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

// Whether a recorded step counts: below `margin` between the reference's top-1 and top-2
// log-probs, rounding may legitimately flip the argmax, and the prompt's comparison stops.
inline bool step_counts(const nlohmann::json& step, double margin = 0.05) {
  return step["top"][0][1].get<double>() - step["top"][1][1].get<double>() > margin;
}

// The names (file stems) of the JSON references in `dir`, sorted; none where it cannot be read.
inline std::vector<std::string> reference_names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

// How to make the model a reference's `synth` object describes (shape, type, seed, layers, and a
// vocabulary under OMNI_SHARED_DIR), written to `out_path`; nullopt for an unknown type.
inline std::optional<SynthOptions> synth_options(const nlohmann::json& spec, const std::string& out_path) {
  const auto mix = mix_from_name(spec["type"].get<std::string>());
  if (!mix) return std::nullopt;
  SynthOptions o;
  o.shape = spec["shape"].get<std::string>();
  o.mix = *mix;
  o.seed = spec["seed"].get<uint64_t>();
  o.n_layers = spec.value("layers", 0u);
  if (const std::string vocab = spec.value("vocab", std::string()); !vocab.empty())
    o.vocab_path = std::string(OMNI_SHARED_DIR) + "/" + vocab;
  o.threads = 2;
  o.out_path = out_path;
  return o;
}

}  // namespace omni::model::test_support
