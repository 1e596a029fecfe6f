// The engine against llama.cpp on many random shapes x types (tests/data/reference/differential,
// written by scripts/parity/differential.py; OMNI_DIFFERENTIAL_DIR points elsewhere), and the
// engine's independence from the CPU's SIMD level at model level.
//
// Random-weight models are chaotic: a one-ulp difference in a sum can move a log-prob by 1e-2 and
// flip a near-tie, and two builds of the same llama.cpp source differ from each other that much.
// So each reference records its own build-to-build spread (the largest top-5 log-prob difference
// between llama.cpp builds of one source that round differently), and the rule is:
//   - greedy tokens agree while the primary build's top-1/top-2 margin exceeds max(0.05, spread)
//     (a prompt's comparison stops at the first step under it);
//   - top-5 log-probs of those steps agree within spread + 1e-3;
//   - perplexity (fixed random tokens, llama.cpp's chunked rule) agrees within 0.5%;
//   - where the reference says "exact" (the engine reproduced the primary build when the file was
//     recorded: the build whose arithmetic docs/design.md "Numerical parity" describes), log-probs
//     agree within 2e-6 (the files print 1e-9; exp/log of the two sides add the rest) and
//     perplexity within 1e-6.
// Each model is synthesized again here (deterministic: the same bytes on every machine) in a
// temporary directory that is removed afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "kernels/matmul.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "model/shapes.h"
#include "model/synth.h"
#include "model/tests/reference_rule.h"

namespace omni::model {
namespace {

using nlohmann::json;
using namespace test_support;
namespace fs = std::filesystem;

constexpr double kMinMargin = 0.05;
constexpr double kLogprobFloor = 1e-3;
constexpr double kPerplexityRel = 0.005;
constexpr double kExactLogprob = 2e-6;
constexpr double kExactPerplexityRel = 1e-6;

std::string reference_dir() {
  if (const char* env = std::getenv("OMNI_DIFFERENTIAL_DIR"); env && *env) return env;
  return OMNI_DIFFERENTIAL_REFERENCE_DIR;
}

// Measure mode (scripts/parity/differential.py): report the deviations, do not require exactness.
bool measuring() { return std::getenv("OMNI_DIFFERENTIAL_MEASURE") != nullptr; }

std::vector<std::string> reference_files() { return reference_names(reference_dir()); }

// A directory of this process's own, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "omni-differential-XXXXXX").string();
    if (::mkdtemp(pattern.data())) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Result<std::unique_ptr<Model>> synthesize_and_load(const json& spec, const TempDir& dir) {
  const auto o = synth_options(spec, dir.path() + "/model.gguf");
  if (!o) return Error{ErrorCode::InvalidArgument, "unknown type " + spec["type"].dump()};
  if (auto r = synthesize(*o); !r) return r.error();
  return Model::load(o->out_path);
}

class Differential : public ::testing::TestWithParam<std::string> {};

TEST_P(Differential, AgreesWithLlamaCppWithinItsOwnSpread) {
  const std::string name = GetParam();
  const json ref = load_json(reference_dir() + "/" + name + ".json");
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  auto model = synthesize_and_load(ref["synth"], dir);
  ASSERT_TRUE(model) << model.error().message;
  kernels::ThreadPool pool(2);

  const double spread = ref["spread"]["logprob"].get<double>();
  const double margin = std::max(kMinMargin, spread);
  const double tolerance = spread + kLogprobFloor;
  const bool exact = ref.value("exact", false) && !measuring();
  double worst = 0;           // largest top-5 log-prob difference over the compared steps
  int compared = 0, mismatched = 0;
  for (const json& prompt : ref["prompts"]) {
    const auto tokens = prompt["prompt_tokens"].get<std::vector<int32_t>>();
    auto session = Session::create(**model, 0, (*model)->config().n_layer, 512);
    ASSERT_TRUE(session) << session.error().message;
    std::vector<float> logits;
    std::vector<int32_t> input = tokens;
    int step_index = 0;
    for (const json& step : prompt["steps"]) {
      if (!step_counts(step, margin)) break;
      ASSERT_TRUE((*session)->forward(input, {}, Output::LastLogits, logits, pool));
      const std::vector<double> lp = log_softmax(logits);
      for (const json& pair : step["top"]) {
        const double diff = std::abs(lp[pair[0].get<int32_t>()] - pair[1].get<double>());
        worst = std::max(worst, diff);
        EXPECT_LE(diff, exact ? kExactLogprob : tolerance)
            << name << " token " << pair[0] << " at step " << step_index << " of a prompt of " << tokens.size()
            << " tokens" << (exact ? " (exact reference)" : "");
      }
      ++compared;
      const auto ours = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (ours != step["id"].get<int32_t>()) {
        ++mismatched;
        ADD_FAILURE() << name << ": greedy token " << ours << ", llama.cpp's " << step["id"] << " (margin "
                      << step["top"][0][1].get<double>() - step["top"][1][1].get<double>() << ") at step "
                      << step_index << " of a prompt of " << tokens.size() << " tokens";
        break;  // the histories differ from here on
      }
      ++step_index;
      input = {ours};
    }
  }

  const json& p = ref["perplexity"];
  const auto ppl_tokens = p["tokens"].get<std::vector<int32_t>>();
  const int32_t bos = p["bos"].get<int32_t>();
  auto ppl = perplexity(**model, ppl_tokens, p["n_ctx"].get<uint32_t>(), p["chunks"].get<uint32_t>(),
                        bos >= 0 ? std::optional<int32_t>(bos) : std::nullopt, pool);
  ASSERT_TRUE(ppl) << ppl.error().message;
  const double expected = p["value"].get<double>();
  const double rel = std::abs(ppl->perplexity / expected - 1);
  EXPECT_LE(rel, exact ? kExactPerplexityRel : kPerplexityRel)
      << name << ": perplexity " << ppl->perplexity << " vs llama.cpp's " << expected;

  // A reference whose steps all fall under the margin would test nothing but perplexity.
  EXPECT_GE(compared, 3) << "too few steps to compare in " << name;
  if (measuring()) {
    const bool agrees = mismatched == 0 && worst <= tolerance && rel <= kPerplexityRel && compared >= 3;
    std::printf("[differential-measure] %s\n", json{{"name", name},
                                                     {"worst", worst},
                                                     {"steps", compared},
                                                     {"mismatched", mismatched},
                                                     {"ppl_rel", rel},
                                                     {"agrees", agrees}}
                                                    .dump()
                                                    .c_str());
  }
  std::printf("[differential] %-28s %-8s steps %2d, worst |dlogprob| %.1e (%s %.1e), perplexity rel %.1e\n",
              name.c_str(), ref["synth"]["type"].get<std::string>().c_str(), compared, worst,
              exact ? "exact:" : "spread+floor", exact ? kExactLogprob : tolerance, rel);
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Differential, ::testing::ValuesIn(reference_files()), test_name);

TEST(DifferentialData, CoversThirtyShapesTimesTypes) {
  if (std::getenv("OMNI_DIFFERENTIAL_DIR")) GTEST_SKIP() << "another reference directory";
  const auto files = reference_files();
  EXPECT_GE(files.size(), 30u);
  std::set<std::string> types, archs;
  for (const std::string& name : files) {
    const json ref = load_json(reference_dir() + "/" + name + ".json");
    types.insert(ref["synth"]["type"].get<std::string>());
    auto shape = resolve_shape(ref["synth"]["shape"].get<std::string>());
    ASSERT_TRUE(shape) << shape.error().message;
    archs.insert(shape->arch);
    EXPECT_TRUE(ref["spread"].contains("logprob")) << name;
    EXPECT_TRUE(ref["llama_cpp"].contains("builds")) << name;
    EXPECT_TRUE(ref["cpu"].contains("simd_flags")) << name;
  }
  EXPECT_GE(types.size(), 10u);
  EXPECT_GE(archs.size(), 3u);
}

// The custom shapes the differential script draws (model/shapes.h).
TEST(CustomShape, SpecTakesTheArchitecturesTraits) {
  auto q = resolve_shape("custom:arch=qwen2,layers=3,embd=256,heads=8,kv_heads=1,head_dim=64,ff=512,vocab=4096,tied=1");
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->arch, "qwen2");
  EXPECT_EQ(q->n_layer, 3u);
  EXPECT_EQ(q->n_head / q->n_head_kv, 8u);
  EXPECT_EQ(q->head_dim, 64u);
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_TRUE(q->tied_embeddings);
  EXPECT_TRUE(q->head_dim_in_config);  // 64 != 256 / 8: the converter writes key_length
  EXPECT_EQ(q->name, "custom:arch=qwen2,layers=3,embd=256,heads=8,kv_heads=1,head_dim=64,ff=512,vocab=4096,tied=1");

  auto l = resolve_shape("custom:arch=llama,layers=1,embd=256,heads=4,ff=256,vocab=600");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->n_head_kv, 4u);
  EXPECT_EQ(l->head_dim, 64u);
  EXPECT_FALSE(l->head_dim_in_config);
  EXPECT_FALSE(l->tied_embeddings);
  EXPECT_FALSE(l->qkv_bias);

  auto g2 = resolve_shape("custom:arch=gemma2,layers=26,embd=256,heads=4,kv_heads=2,head_dim=128,ff=512,vocab=4096,window=16");
  ASSERT_TRUE(g2) << g2.error().message;
  EXPECT_TRUE(g2->tied_embeddings);
  EXPECT_TRUE(g2->post_norms);
  EXPECT_EQ(g2->sliding_window, 16u);
  EXPECT_EQ(g2->attn_softcap, 50.0f);
  EXPECT_EQ(g2->final_softcap, 30.0f);

  auto named = resolve_shape("qwen3-tiny");
  ASSERT_TRUE(named);
  EXPECT_EQ(named->name, "qwen3-tiny");
}

TEST(CustomShape, BadSpecsAreRefusedByName) {
  const std::pair<const char*, const char*> cases[] = {
      {"custom:arch=llama,embd=256,heads=4,ff=256,vocab=600", "'layers' is required"},
      {"custom:arch=llama,layers=2,embd=256,heads=4,ff=256,vocab=600,colour=blue", "unknown key 'colour'"},
      {"custom:arch=llama,layers=2,embd=256,heads=6,kv_heads=4,ff=256,vocab=600", "multiple of kv_heads"},
      {"custom:arch=gemma,layers=2,embd=256,heads=4,ff=256,vocab=600,tied=0", "always ties"},
      {"custom:arch=phi3,layers=2,embd=256,heads=4,ff=256,vocab=600", "cannot be synthesized"},
      {"custom:arch=llama,layers=2,embd=256,heads=4,head_dim=63,ff=256,vocab=600", "even"},
      {"custom:arch=llama,layers=2x,embd=256,heads=4,ff=256,vocab=600", "'layers' must be an integer"},
      {"custom:arch=llama,layers=0,embd=256,heads=4,ff=256,vocab=600", "'layers' must be an integer"},
      {"custom:arch=llama,layers=2,layers=3,embd=256,heads=4,ff=256,vocab=600", "given twice"},
      {"custom:arch=llama,layers", "is not key=value"},
      {"custom:arch=llama,layers=2,embd=256,heads=4,ff=256,vocab=600,embd_std=nan", "'embd_std' must be a number"},
  };
  for (const auto& [spec, why] : cases) {
    auto s = resolve_shape(spec);
    ASSERT_FALSE(s) << spec;
    EXPECT_TRUE(s.error().is(ErrorCode::InvalidArgument)) << spec;
    EXPECT_NE(s.error().message.find(why), std::string::npos) << spec << ": " << s.error().message;
  }
  auto unknown = resolve_shape("no-such-shape");
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(unknown.error().is(ErrorCode::NotFound));
}

// The swarm verifies a node's output by recomputing it elsewhere: the engine's logits must not
// depend on the CPU. Every SIMD level this CPU has gives the scalar path's bits, for whole models
// of several architectures and types (prompt batch and decode steps).
class SimdIndependence : public ::testing::TestWithParam<std::string> {};

struct ForcedLevel {
  explicit ForcedLevel(const char* level) { kernels::force_simd_level(level); }
  ~ForcedLevel() { kernels::force_simd_level(nullptr); }
  ForcedLevel(const ForcedLevel&) = delete;
  ForcedLevel& operator=(const ForcedLevel&) = delete;
};

std::vector<float> run_levels_input(const Model& model, const std::vector<int32_t>& prompt, kernels::ThreadPool& pool) {
  auto session = Session::create(model, 0, model.config().n_layer, 512);
  EXPECT_TRUE(session);
  if (!session) return {};
  std::vector<float> all, step, out;
  EXPECT_TRUE((*session)->forward(prompt, {}, Output::AllLogits, all, pool));
  out = all;
  for (int32_t token : {prompt[1], prompt[0], prompt[2]}) {
    EXPECT_TRUE((*session)->forward({{token}}, {}, Output::LastLogits, step, pool));
    out.insert(out.end(), step.begin(), step.end());
  }
  return out;
}

TEST_P(SimdIndependence, EveryLevelGivesTheScalarBits) {
  const json ref = load_json(reference_dir() + "/" + GetParam() + ".json");
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  auto model = synthesize_and_load(ref["synth"], dir);
  ASSERT_TRUE(model) << model.error().message;
  kernels::ThreadPool pool(2);
  // Short: the scalar path is slow, and every kernel runs already at a dozen tokens.
  std::vector<int32_t> prompt = ref["prompts"].back()["prompt_tokens"].get<std::vector<int32_t>>();
  if (prompt.size() > 8) prompt.resize(8);
  ASSERT_GE(prompt.size(), 3u);
  std::vector<float> scalar;
  {
    ForcedLevel forced("scalar");
    scalar = run_levels_input(**model, prompt, pool);
  }
  int levels = 0;
  for (const char* level : {"avx2", "avx512", "neon", "dotprod", "i8mm"}) {
    ForcedLevel forced(level);
    if (std::strcmp(kernels::simd_level(), level) != 0) continue;  // this CPU lacks it
    const std::vector<float> got = run_levels_input(**model, prompt, pool);
    ASSERT_EQ(got.size(), scalar.size());
    size_t differing = 0;
    for (size_t i = 0; i < got.size(); ++i)
      differing += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(scalar[i]);
    EXPECT_EQ(differing, 0u) << GetParam() << " at " << level << ": " << differing << " of " << got.size()
                             << " logits differ from the scalar path";
    ++levels;
  }
  if (levels == 0) GTEST_SKIP() << "this CPU has no SIMD level besides scalar";
}

// The smallest model (generated vocabulary, at most 6 blocks) of each of eight types that cover
// every kernel family (F16, BF16, the Q8_0 / Q4_0 / Q5_1 block rules, the K-quants): the scalar
// path, which runs them too, is slow.
std::vector<std::string> simd_cases() {
  const std::set<std::string> types = {"f16", "bf16", "q8_0", "q4_0", "q5_1", "q3_k_m", "q4_k_m", "q6_k"};
  std::map<std::string, std::pair<uint64_t, std::string>> smallest;  // type -> (parameters, reference)
  for (const std::string& name : reference_files()) {
    const json ref = load_json(reference_dir() + "/" + name + ".json");
    if (!ref["synth"].value("vocab", std::string()).empty() || !types.count(ref["synth"]["type"].get<std::string>()))
      continue;
    auto shape = resolve_shape(ref["synth"]["shape"].get<std::string>());
    if (!shape || shape->n_layer > 6) continue;
    const uint64_t params = parameter_count(tensor_layout(*shape));
    auto [it, inserted] = smallest.try_emplace(ref["synth"]["type"].get<std::string>(), params, name);
    if (!inserted && params < it->second.first) it->second = {params, name};
  }
  std::vector<std::string> out;
  for (const auto& [type, entry] : smallest) out.push_back(entry.second);
  return out;
}

INSTANTIATE_TEST_SUITE_P(RandomShapes, SimdIndependence, ::testing::ValuesIn(simd_cases()), test_name);

}  // namespace
}  // namespace omni::model
