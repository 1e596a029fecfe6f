// The architectures that have no model in ../shared (qwen3, gemma, gemma2) against an independent
// implementation, llama.cpp, plus what their configuration and block ranges must satisfy.
//
// Each JSON file in tests/data/reference/ (OMNI_ARCH_REFERENCE_DIR; the environment variable of
// that name points elsewhere, e.g. at references of full-size shapes made by hand) records what
// llama.cpp computed on a synthetic model: the `synth` object says how to make the model (shape,
// type, seed, layers, vocabulary), the prompts are token ids, the steps are llama.cpp's greedy
// steps with their top-5 log-probs, as in ../shared/reference. Synthesis is deterministic (same
// bytes on every machine), so the test makes the model in a temporary directory and compares by
// the rule of ../shared/README.md: steps count while llama.cpp's top-1 and top-2 log-probs differ
// by more than 0.05; top-5 log-probs agree to 1e-3 (F16, Q8_0) or 2e-2 (4-bit types).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "gguf/value.h"
#include "model/config.h"
#include "model/model.h"
#include "model/shapes.h"
#include "model/synth.h"
#include "model/tests/reference_rule.h"

namespace omni::model {
namespace {

using nlohmann::json;
using namespace test_support;

std::string reference_dir() {
  if (const char* env = std::getenv("OMNI_ARCH_REFERENCE_DIR"); env && *env) return env;
  return OMNI_ARCH_REFERENCE_DIR;
}

std::vector<std::string> reference_files() { return reference_names(reference_dir()); }

// The models this program made, removed when it exits.
struct MadeModels : std::map<std::string, std::string> {
  ~MadeModels() {
    for (const auto& [key, path] : *this) std::remove(path.c_str());
  }
};

// Makes the model a reference file describes, once per test program.
std::string synthesize_for(const json& spec) {
  static MadeModels made;
  const std::string key = spec.dump();
  if (auto it = made.find(key); it != made.end()) return it->second;
  // ctest runs each test as its own process, several at once: the name must be this process's own.
  const std::string out_path =
      ::testing::TempDir() + "/arch-ref-" + std::to_string(::getpid()) + "-" + std::to_string(made.size()) + ".gguf";
  const auto o = synth_options(spec, out_path);
  EXPECT_TRUE(o.has_value()) << spec["type"];
  if (!o) return {};
  auto r = synthesize(*o);
  EXPECT_TRUE(r) << r.error().message;
  if (!r) return {};
  return made[key] = out_path;
}


class ArchReference : public ::testing::TestWithParam<std::string> {};

// Which llama.cpp made each file is in its "llama_cpp" note. Two llama.cpp versions are needed
// (the February 2025 one, like the one that made ../shared/reference, predates qwen3 and knows gemma2
// only at real layer counts), and they differ from each other by more than the tolerance on these
// small models (their top-1 logit stands far above the rest, so one-ulp differences in a sum move
// log-probs by 1e-3 and more): the newer one pads the attention length to 256 (not 32) and has
// reworked Q4_K/Q6_K kernels. So the newer one ran with the older padding and, for F16 and Q8_0,
// without weight repacking, and its 4-bit files are Q4_0 (summed as the engine does); gemma's
// files, all three types, come from the older version.
TEST_P(ArchReference, GreedyStepsAndTopLogprobs) {
  const std::string name = GetParam();
  const json ref = load_json(reference_dir() + "/" + name + ".json");
  const std::string path = synthesize_for(ref["synth"]);
  ASSERT_FALSE(path.empty());
  auto model = Model::load(path);
  ASSERT_TRUE(model) << model.error().message;
  kernels::ThreadPool pool(2);
  const double tol = logprob_tolerance(ref["synth"]["type"].get<std::string>());
  double worst = 0;
  int compared = 0, allowed = 0;
  for (const json& prompt : ref["prompts"]) {
    const auto tokens = prompt["prompt_tokens"].get<std::vector<int32_t>>();
    auto session = Session::create(**model, 0, (*model)->config().n_layer, 512);
    ASSERT_TRUE(session) << session.error().message;
    std::vector<float> logits;
    std::vector<int32_t> input = tokens;
    int step_index = 0;
    for (const json& step : prompt["steps"]) {
      // Below this margin rounding may legitimately flip the argmax: stop comparing this prompt.
      if (!step_counts(step)) break;
      ++allowed;
      auto r = (*session)->forward(input, {}, Output::LastLogits, logits, pool);
      ASSERT_TRUE(r) << r.error().message;
      const std::vector<double> lp = log_softmax(logits);
      const int32_t ours = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ASSERT_EQ(ours, step["id"].get<int32_t>()) << name << " prompt of " << tokens.size() << " tokens, step "
                                                 << step_index;
      for (const json& pair : step["top"]) {
        const double diff = std::abs(lp[pair[0].get<int32_t>()] - pair[1].get<double>());
        worst = std::max(worst, diff);
        EXPECT_LE(diff, tol) << name << " token " << pair[0] << " at step " << step_index << " of a prompt of "
                             << tokens.size() << " tokens";
      }
      ++compared;
      ++step_index;
      input = {ours};
    }
  }
  EXPECT_EQ(compared, allowed);
  // A reference whose steps all fall under the margin would test nothing.
  EXPECT_GE(compared, 20) << "too few steps to compare in " << name;
  std::printf("[arch-reference] %-24s steps compared %3d, worst |dlogprob| %.2e (tolerance %.0e)\n", name.c_str(),
              compared, worst, tol);
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, ArchReference, ::testing::ValuesIn(reference_files()), [](const auto& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
});

TEST(ArchReferenceData, CoversEachArchitectureInThreeTypes) {
  // The committed references: qwen3, gemma and gemma2, each in F16, Q8_0 and a 4-bit mix.
  if (std::getenv("OMNI_ARCH_REFERENCE_DIR")) GTEST_SKIP() << "another reference directory";
  std::map<std::string, std::vector<std::string>> types;
  for (const std::string& name : reference_files()) {
    const json ref = load_json(reference_dir() + "/" + name + ".json");
    const Shape* shape = find_shape(ref["synth"]["shape"].get<std::string>());
    ASSERT_NE(shape, nullptr) << name;
    types[shape->arch].push_back(ref["synth"]["type"].get<std::string>());
  }
  for (const char* arch : {"qwen3", "gemma", "gemma2"}) {
    const auto& t = types[arch];
    EXPECT_NE(std::find(t.begin(), t.end(), "f16"), t.end()) << arch;
    EXPECT_NE(std::find(t.begin(), t.end(), "q8_0"), t.end()) << arch;
    EXPECT_TRUE(std::any_of(t.begin(), t.end(), [](const std::string& s) { return s.rfind("q4", 0) == 0; })) << arch;
  }
}

// Block ranges compose bit-exactly on the new architectures too, over a prompt longer than
// gemma2-tiny's sliding window of 32 and decode steps past it.
class ArchBlockRanges : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchBlockRanges, SplitRangesGiveBitIdenticalLogits) {
  const std::string path = synthesize_for(json{{"shape", GetParam()}, {"type", "q8_0"}, {"seed", 3}});
  ASSERT_FALSE(path.empty());
  auto loaded = Model::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  const Model& model = **loaded;
  const uint32_t n = model.config().n_layer;
  ASSERT_GE(n, 2u);
  kernels::ThreadPool pool(2);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 45; ++i) prompt.push_back(300 + (i * 97) % 3700);
  auto whole = Session::create(model, 0, n, 96);
  ASSERT_TRUE(whole);
  std::vector<float> expect, hidden, got;
  ASSERT_TRUE((*whole)->forward(prompt, {}, Output::AllLogits, expect, pool));
  for (uint32_t cut = 1; cut < n; ++cut) {
    auto a = Session::create(model, 0, cut, 96), b = Session::create(model, cut, n, 96);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE((*a)->forward(prompt, {}, Output::Hidden, hidden, pool));
    ASSERT_TRUE((*b)->forward({}, hidden, Output::AllLogits, got, pool));
    ASSERT_EQ(got, expect) << "cut at block " << cut;
    if (cut == 1) {
      // Decode steps through both pieces, one at a time.
      std::vector<float> step_whole;
      for (int32_t token : {17, 1234, 999}) {
        ASSERT_TRUE((*whole)->forward({{token}}, {}, Output::LastLogits, step_whole, pool));
        ASSERT_TRUE((*a)->forward({{token}}, {}, Output::Hidden, hidden, pool));
        ASSERT_TRUE((*b)->forward({}, hidden, Output::LastLogits, got, pool));
        ASSERT_EQ(got, step_whole) << "decode token " << token;
      }
      ASSERT_TRUE((*whole)->rollback(3));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SynthModels, ArchBlockRanges, ::testing::Values("qwen3-tiny", "gemma-tiny", "gemma2-tiny"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(ArchConfig, Gemma2TinyShapeSlidesEvenLayersOver32Positions) {
  const std::string path = synthesize_for(json{{"shape", "gemma2-tiny"}, {"type", "q8_0"}, {"seed", 3}});
  ASSERT_FALSE(path.empty());
  auto loaded = Model::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  const ModelConfig& c = (*loaded)->config();
  EXPECT_EQ(c.sliding_window, 32u);
  EXPECT_TRUE(c.is_sliding(0));
  EXPECT_FALSE(c.is_sliding(1));
}

// A gemma2 header as the converter writes it, for the configuration tests.
gguf::Metadata gemma2_metadata(uint32_t n_layer = 26) {
  gguf::Metadata md;
  md.set("general.architecture", gguf::Value::string("gemma2"));
  add_hparams(md, *find_shape("gemma2-2b"), n_layer, 256000, 1);
  return md;
}

TEST(ArchConfig, Gemma2HyperParameters) {
  auto c = ModelConfig::from_metadata(gemma2_metadata());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->arch, Architecture::Gemma2);
  EXPECT_EQ(c->head_dim, 256u);  // key_length, not 2304 / 8
  EXPECT_EQ(c->attn_softcap, 50.0f);
  EXPECT_EQ(c->final_softcap, 30.0f);
  EXPECT_EQ(c->sliding_window, 4096u);
  EXPECT_TRUE(c->post_norms);
  EXPECT_TRUE(c->scale_query);
  EXPECT_TRUE(c->scale_embeddings);
  EXPECT_EQ(c->activation, FfnActivation::GeluGated);
  EXPECT_EQ(c->attn_scale, 1.0f / 16.0f);  // query_pre_attn_scalar = head_dim = 256
  for (uint32_t l = 0; l < 26; ++l) EXPECT_EQ(c->is_sliding(l), l % 2 == 0) << l;  // even layers slide
  EXPECT_EQ(c->rope_base_swa, c->rope_base);

  // 46 layers is how llama.cpp knows Gemma 2 27B, whose query_pre_attn_scalar is n_embd / n_head.
  auto big = ModelConfig::from_metadata(gemma2_metadata(46));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->attn_scale, 1.0f / std::sqrt(2304.0f / 8.0f));

  gguf::Metadata md = gemma2_metadata();
  md.set("gemma2.attention.sliding_window_pattern", gguf::Value::u32(3));
  md.set("gemma2.rope.freq_base_swa", gguf::Value::f32(1000.0f));
  auto p3 = ModelConfig::from_metadata(md);
  ASSERT_TRUE(p3) << p3.error().message;
  EXPECT_TRUE(p3->is_sliding(0));
  EXPECT_TRUE(p3->is_sliding(1));
  EXPECT_FALSE(p3->is_sliding(2));
  EXPECT_EQ(p3->rope_base_swa, 1000.0f);
  md.set("gemma2.attention.sliding_window_pattern", gguf::Value::u32(0));
  auto all = ModelConfig::from_metadata(md);
  ASSERT_TRUE(all);
  for (uint32_t l = 0; l < 26; ++l) EXPECT_TRUE(all->is_sliding(l)) << l;

  // The other architectures: no window, no caps; the gemma query is scaled before attention too.
  EXPECT_FALSE(ModelConfig{}.is_sliding(0));
  gguf::Metadata g;
  g.set("general.architecture", gguf::Value::string("gemma"));
  add_hparams(g, *find_shape("gemma-2b"), 18, 256000, 1);
  auto gc = ModelConfig::from_metadata(g);
  ASSERT_TRUE(gc) << gc.error().message;
  EXPECT_TRUE(gc->scale_query);
  EXPECT_EQ(gc->attn_softcap, 0.0f);
  EXPECT_FALSE(gc->post_norms);
  EXPECT_FALSE(gc->is_sliding(0));
}

TEST(ArchConfig, Gemma2MissingOrBadKeysAreNamed) {
  for (const char* key : {"gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping",
                          "gemma2.attention.sliding_window", "gemma2.attention.key_length"}) {
    gguf::Metadata md = gemma2_metadata();
    md.erase(key);
    if (std::string(key) == "gemma2.attention.key_length") md.erase("gemma2.attention.value_length");
    auto c = ModelConfig::from_metadata(md);
    if (std::string(key) == "gemma2.attention.key_length") {
      // Optional: head_dim falls back to n_embd / n_head (288), which changes every tensor shape.
      ASSERT_TRUE(c);
      EXPECT_EQ(c->head_dim, 288u);
      continue;
    }
    ASSERT_FALSE(c) << key;
    EXPECT_EQ(c.error().code, ErrorCode::NotFound) << c.error().message;
    EXPECT_NE(c.error().message.find(std::string("'") + key + "' is missing"), std::string::npos)
        << c.error().message;
  }
  gguf::Metadata md = gemma2_metadata();
  md.set("gemma2.attn_logit_softcapping", gguf::Value::f32(0.0f));
  auto zero = ModelConfig::from_metadata(md);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::Corruption) << zero.error().message;
  EXPECT_NE(zero.error().message.find("'gemma2.attn_logit_softcapping' must be a positive number"), std::string::npos)
      << zero.error().message;
  md = gemma2_metadata();
  md.set("gemma2.attention.sliding_window", gguf::Value::u32(0));
  auto no_window = ModelConfig::from_metadata(md);
  ASSERT_FALSE(no_window);
  EXPECT_EQ(no_window.error().code, ErrorCode::Corruption) << no_window.error().message;
  EXPECT_NE(no_window.error().message.find("gemma2.attention.sliding_window"), std::string::npos);
  md = gemma2_metadata();
  md.set("gemma2.attention.sliding_window_pattern",
         gguf::Value::array(gguf::Array::of(gguf::ValueType::BOOL, std::vector<uint8_t>(26, 1))));
  auto arr = ModelConfig::from_metadata(md);
  ASSERT_FALSE(arr);
  EXPECT_EQ(arr.error().code, ErrorCode::InvalidArgument) << arr.error().message;
  EXPECT_NE(arr.error().message.find("per-layer array: not supported"), std::string::npos) << arr.error().message;

  const auto archs = supported_architectures();
  for (const char* a : {"llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2"})
    EXPECT_NE(std::find(archs.begin(), archs.end(), a), archs.end()) << a;
}

TEST(ArchConfig, Gemma2MissingPostNormIsNamed) {
  // A gemma2 file without post_ffw_norm is refused, naming the tensor; built by synthesizing
  // gemma2-tiny and asking for a gemma2 config over the tensors of gemma-tiny (no post-norms).
  const std::string path = synthesize_for(json{{"shape", "gemma-tiny"}, {"type", "f16"}, {"seed", 3}});
  ASSERT_FALSE(path.empty());
  auto file = gguf::File::open(path);
  ASSERT_TRUE(file) << file.error().message;
  gguf::Metadata md;
  md.set("general.architecture", gguf::Value::string("gemma2"));
  Shape s = *find_shape("gemma2-tiny");
  s.n_head_kv = 1;
  s.head_dim = 64;
  add_hparams(md, s, 2, 4096, 1);
  auto c = ModelConfig::from_metadata(md);
  ASSERT_TRUE(c) << c.error().message;
  c->n_vocab = 4096;
  auto w = ModelWeights::bind(*file, *c, LoadRange{});
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, ErrorCode::NotFound) << w.error().message;
  EXPECT_NE(w.error().message.find("tensor 'blk.0.post_attention_norm.weight' is missing"), std::string::npos)
      << w.error().message;
}

}  // namespace
}  // namespace omni::model
