// The engine's logits must not depend on the CPU that computes them: the swarm checks a node's
// output by recomputing it on another machine, so an ARM node must give an x86 node's bits. This
// test computes the logits of a prompt and three decode steps for models of every architecture and
// weight-type family and reduces each model's logits to a digest of their bits. With
// OMNI_LOGITS_DIGESTS_OUT=FILE it appends "model digest" lines to FILE; with
// OMNI_LOGITS_DIGESTS=FILE (made by a build for another CPU) it requires the same digests.
// scripts/ci_aarch64.sh runs it natively on x86-64, then on AArch64 under qemu at each NEON level.
// Without either variable there is nothing to compare with, and the test skips. The tiny shapes are
// synthesized into OMNI_CROSS_CPU_MODELS (a directory) unless they are there already, so the
// emulated run can load the files the native run made (synthesis is the same bytes on every CPU,
// and slow under emulation); without it, into a temporary file.
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include <unistd.h>

#include "kernels/matmul.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/tests/reference_rule.h"

namespace omni::model {
namespace {

using nlohmann::json;
using namespace test_support;

struct Case {
  const char* name;
  const char* shared_model;  // a file in ../shared/models, or
  const char* shape;         // a test shape synthesized here
  const char* type;
  // Why this model's bits are known to differ between x86-64 and AArch64, or null. A known
  // difference skips with the reason; once the bits agree the case passes like the others.
  const char* known_difference = nullptr;
};
// Test listings show the case's name, not the struct's bytes (which hold addresses).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The shared models (llama in five types, qwen2, phi3) and the tiny shapes of the architectures
// the shared files lack (qwen3; gemma's GELU table; gemma2's tanh soft-capping).
constexpr Case kCases[] = {
    {"synth_llama_f16", "synth-llama-f16.gguf", nullptr, nullptr},
    {"synth_llama_q8_0", "synth-llama-q8_0.gguf", nullptr, nullptr},
    {"synth_llama_q4_0", "synth-llama-q4_0.gguf", nullptr, nullptr},
    {"synth_llama_q4_k_m", "synth-llama-q4_k_m.gguf", nullptr, nullptr},
    {"synth_llama_q6_k", "synth-llama-q6_k.gguf", nullptr, nullptr},
    {"synth_qwen2_q4_k_m", "synth-qwen2-q4_k_m.gguf", nullptr, nullptr},
    {"synth_phi3_q8_0", "synth-phi3-q8_0.gguf", nullptr, nullptr},
    {"qwen3_tiny_q4_k_m", nullptr, "qwen3-tiny", "q4_k_m"},
    {"gemma_tiny_q5_1", nullptr, "gemma-tiny", "q5_1"},
    {"gemma2_tiny_q8_0", nullptr, "gemma2-tiny", "q8_0",
     "gemma2's soft-capping calls libm's tanhf, which glibc computes differently on x86-64 and AArch64 "
     "for a few arguments (12 of 65536 sampled)"},
};

// FNV-1a over the logits' bits.
uint64_t digest(const std::vector<float>& values) {
  uint64_t h = 1469598103934665603ull;
  for (float v : values) {
    h ^= std::bit_cast<uint32_t>(v);
    h *= 1099511628211ull;
  }
  return h;
}

std::string recorded_digest(const std::string& file, const std::string& name) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string model, value;
    if (fields >> model >> value && model == name) return value;
  }
  return {};
}

class CrossCpu : public ::testing::TestWithParam<Case> {};

TEST_P(CrossCpu, LogitsBitsMatchTheOtherBuild) {
  const Case& c = GetParam();
  const char* out = std::getenv("OMNI_LOGITS_DIGESTS_OUT");
  const char* in = std::getenv("OMNI_LOGITS_DIGESTS");
  if (out == nullptr && in == nullptr) GTEST_SKIP() << "no digests to write or compare (OMNI_LOGITS_DIGESTS[_OUT])";

  std::string path = c.shared_model ? std::string(OMNI_SHARED_DIR) + "/models/" + c.shared_model : std::string();
  const char* models_dir = std::getenv("OMNI_CROSS_CPU_MODELS");
  const bool temporary = c.shape != nullptr && models_dir == nullptr;
  if (c.shape) {
    path = temporary ? ::testing::TempDir() + "/cross-cpu-" + std::to_string(::getpid()) + "-" + c.name + ".gguf"
                     : std::string(models_dir) + "/" + c.name + ".gguf";
    if (temporary || !std::filesystem::exists(path)) {
      const auto options = synth_options(json{{"shape", c.shape}, {"type", c.type}, {"seed", 5}}, path);
      ASSERT_TRUE(options);
      auto made = synthesize(*options);
      ASSERT_TRUE(made) << made.error().message;
    }
  }
  auto model = Model::load(path);
  ASSERT_TRUE(model) << model.error().message;
  // One thread: the split never changes the bits (matmul_test), and under emulation on a busy host a
  // second thread's wake-ups dominate the run.
  kernels::ThreadPool pool(1);
  auto session = Session::create(**model, 0, (*model)->config().n_layer, 64);
  ASSERT_TRUE(session) << session.error().message;
  std::vector<float> all, step;
  const std::vector<int32_t> prompt{1, 450, 2996, 1354, 1701, 2916, 432, 3001, 77};
  ASSERT_TRUE((*session)->forward(prompt, {}, Output::AllLogits, all, pool));
  for (int32_t token : {29, 1000, 3}) {
    ASSERT_TRUE((*session)->forward({{token}}, {}, Output::LastLogits, step, pool));
    all.insert(all.end(), step.begin(), step.end());
  }
  if (temporary) std::remove(path.c_str());

  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(digest(all)));
  std::printf("[cross-cpu] %-20s %s (%zu logits, kernels %s)\n", c.name, hex, all.size(), kernels::simd_level());
  if (out != nullptr) {
    std::ofstream(out, std::ios::app) << c.name << " " << hex << "\n";
  }
  if (in != nullptr) {
    const std::string expected = recorded_digest(in, c.name);
    ASSERT_FALSE(expected.empty()) << c.name << " is not in " << in;
    if (c.known_difference != nullptr && hex != expected) GTEST_SKIP() << "known difference: " << c.known_difference;
    EXPECT_EQ(hex, expected) << c.name << ": the logits' bits differ from those of the build that wrote " << in;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CrossCpu, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace omni::model
