// quantize_model against llama-quantize: the shared Q8_0, Q4_0, Q6_K and Q4_K_M models were made from
// the shared F16 model by llama.cpp, so converting that F16 file must reproduce their tensors (types
// and bytes) byte for byte, and their general.file_type.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <unistd.h>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "model/quantize_model.h"

namespace omni::model {
namespace {

using gguf::TensorType;
const std::string kShared = OMNI_SHARED_DIR;

// ctest runs each test as its own process, several at once: every output file is this process's own.
std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "-" + name;
}

// Counts tensors whose type and bytes equal the other file's tensor of the same name.
size_t identical_tensors(const gguf::File& a, const gguf::File& b, std::vector<std::string>& different) {
  size_t same = 0;
  for (const auto& t : a.tensors()) {
    const gguf::TensorInfo* u = b.find_tensor(t.name);
    auto x = a.tensor_data(t);
    if (u && u->type == t.type) {
      auto y = b.tensor_data(*u);
      if (std::equal(x.begin(), x.end(), y.begin(), y.end())) {
        ++same;
        continue;
      }
    }
    different.push_back(t.name);
  }
  return same;
}

TEST(QuantizeModel, ReproducesLlamaQuantizeQ8_0) {
  const std::string out = temp_path("q8.gguf");
  auto report = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, TensorType::Q8_0);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->converted, 30u);  // 4 blocks x 7 matrices + token_embd + output
  EXPECT_EQ(report->fallbacks, 0u);
  auto ours = gguf::File::open(out);
  auto theirs = gguf::File::open(kShared + "/models/synth-llama-q8_0.gguf");
  ASSERT_TRUE(ours && theirs);
  std::vector<std::string> different;
  EXPECT_EQ(identical_tensors(*ours, *theirs, different), theirs->tensors().size());
  EXPECT_TRUE(different.empty()) << different.front();
  EXPECT_EQ(*ours->metadata().get_uint("general.file_type"), 7u);
  std::remove(out.c_str());
}

// Converts the shared F16 model with `mix` and compares every tensor with llama-quantize's file.
void expect_reproduces(Mix mix, const std::string& theirs_name) {
  const std::string out = temp_path(theirs_name);
  auto report = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, mix);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->converted, 30u);
  EXPECT_EQ(report->fallbacks, 0u);
  auto ours = gguf::File::open(out);
  auto theirs = gguf::File::open(kShared + "/models/" + theirs_name);
  ASSERT_TRUE(ours && theirs);
  ASSERT_EQ(ours->tensors().size(), theirs->tensors().size());
  std::vector<std::string> different;
  EXPECT_EQ(identical_tensors(*ours, *theirs, different), theirs->tensors().size());
  EXPECT_TRUE(different.empty()) << different.size() << " differ, first " << different.front();
  EXPECT_EQ(*ours->metadata().get_uint("general.file_type"), *theirs->metadata().get_uint("general.file_type"));
  std::remove(out.c_str());
}

TEST(QuantizeModel, ReproducesLlamaQuantizeQ4_0WithItsQ6KHead) {
  expect_reproduces(Mix::Q4_0, "synth-llama-q4_0.gguf");
  // llama-quantize writes the output head of a Q4_0 model as Q6_K; the check above covers it, but
  // make sure the oracle really has that mix in it.
  auto theirs = gguf::File::open(kShared + "/models/synth-llama-q4_0.gguf");
  ASSERT_TRUE(theirs);
  EXPECT_EQ(theirs->find_tensor("output.weight")->type, TensorType::Q6_K);
  EXPECT_EQ(theirs->find_tensor("blk.0.attn_q.weight")->type, TensorType::Q4_0);
}

TEST(QuantizeModel, ReproducesLlamaQuantizeQ6_K) {
  expect_reproduces(Mix::Q6_K, "synth-llama-q6_k.gguf");
  auto theirs = gguf::File::open(kShared + "/models/synth-llama-q6_k.gguf");
  ASSERT_TRUE(theirs);
  EXPECT_EQ(*theirs->metadata().get_uint("general.file_type"), 18u);
}

TEST(QuantizeModel, ReproducesLlamaQuantizeQ4_K_M) {
  expect_reproduces(Mix::Q4_K_M, "synth-llama-q4_k_m.gguf");
  // The oracle mixes Q4_K with Q6_K (output, and attn_v / ffn_down of the layers use_more_bits
  // picks): the comparison above checks both the per-tensor choice and the bytes.
  auto theirs = gguf::File::open(kShared + "/models/synth-llama-q4_k_m.gguf");
  ASSERT_TRUE(theirs);
  size_t q4k = 0, q6k = 0;
  for (const auto& t : theirs->tensors()) {
    q4k += t.type == TensorType::Q4_K;
    q6k += t.type == TensorType::Q6_K;
  }
  EXPECT_GT(q4k, 0u);
  EXPECT_GT(q6k, 1u);
  EXPECT_EQ(*theirs->metadata().get_uint("general.file_type"), 15u);
}

TEST(QuantizeModel, MixNames) {
  EXPECT_EQ(mix_from_name("q4_k_m"), Mix::Q4_K_M);
  EXPECT_EQ(mix_from_name("Q4_K_M"), Mix::Q4_K_M);
  EXPECT_EQ(mix_from_name("q4_k"), Mix::Q4_K_M);  // llama-quantize's alias
  EXPECT_EQ(mix_from_name("q3_k_s"), Mix::Q3_K_S);
  EXPECT_EQ(mix_from_name("q8_0"), Mix::Q8_0);
  EXPECT_FALSE(mix_from_name("q4_k_x"));
  EXPECT_FALSE(mix_from_name("iq2_xxs"));
  for (Mix m : {Mix::F32, Mix::F16, Mix::BF16, Mix::Q8_0, Mix::Q4_0, Mix::Q4_1, Mix::Q5_0, Mix::Q5_1, Mix::Q2_K,
                Mix::Q3_K_S, Mix::Q3_K_M, Mix::Q3_K_L, Mix::Q4_K_S, Mix::Q4_K_M, Mix::Q5_K_S, Mix::Q5_K_M, Mix::Q6_K})
    EXPECT_EQ(mix_from_name(mix_name(m)), m) << mix_name(m);
}

// The rules of llama_tensor_get_type for a TinyLlama-like model (22 layers, GQA 8), written out by
// hand from llama.cpp's source: use_more_bits(i, 22) picks layers 0, 1 (i < 22/8), 19, 20, 21
// (i >= 7*22/8 = 19) and those with (i - 2) % 3 == 2: 4, 7, 10, 13, 16.
TEST(QuantizeModel, PerTensorRulesForTinyLlama) {
  MixModel model{"llama", 22, 32, 4, 0};
  std::vector<MixTensor> tensors{{"token_embd.weight", 2048}, {"output.weight", 2048}};
  for (int i = 21; i >= 0; --i) {  // any order: the rules count in llama.cpp's order
    const std::string b = "blk." + std::to_string(i) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"})
      tensors.push_back({b + n + ".weight", 2048});
    tensors.push_back({b + "ffn_down.weight", 5632});
  }
  auto type_of = [&](Mix mix, const std::string& name) {
    const auto choices = mix_tensor_types(mix, model, tensors);
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) return choices[i].type;
    return TensorType::I32;  // not found
  };
  const std::vector<int> more_bits{0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
  for (int i = 0; i < 22; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const bool more = std::find(more_bits.begin(), more_bits.end(), i) != more_bits.end();
    EXPECT_EQ(type_of(Mix::Q4_K_M, b + "attn_v.weight"), more ? TensorType::Q6_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q4_K_M, b + "ffn_down.weight"), more ? TensorType::Q6_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q4_K_M, b + "attn_q.weight"), TensorType::Q4_K);
    EXPECT_EQ(type_of(Mix::Q5_K_M, b + "ffn_down.weight"), more ? TensorType::Q6_K : TensorType::Q5_K) << i;
    EXPECT_EQ(type_of(Mix::Q4_K_S, b + "attn_v.weight"), i < 4 ? TensorType::Q5_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q4_K_S, b + "ffn_down.weight"), i < 2 ? TensorType::Q5_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q3_K_M, b + "attn_v.weight"), i < 2 ? TensorType::Q5_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q3_K_M, b + "ffn_down.weight"), i < 1 ? TensorType::Q5_K : TensorType::Q4_K) << i;
    EXPECT_EQ(type_of(Mix::Q3_K_M, b + "attn_output.weight"), TensorType::Q4_K);
    EXPECT_EQ(type_of(Mix::Q3_K_L, b + "attn_v.weight"), TensorType::Q5_K);
    EXPECT_EQ(type_of(Mix::Q3_K_S, b + "attn_v.weight"), TensorType::Q3_K);
    EXPECT_EQ(type_of(Mix::Q2_K, b + "attn_v.weight"), TensorType::Q4_K);  // GQA 8 >= 4
    EXPECT_EQ(type_of(Mix::Q2_K, b + "ffn_down.weight"), TensorType::Q3_K);
    EXPECT_EQ(type_of(Mix::Q2_K, b + "attn_output.weight"), TensorType::Q3_K);
    EXPECT_EQ(type_of(Mix::Q2_K, b + "ffn_up.weight"), TensorType::Q2_K);
  }
  for (Mix m : {Mix::Q2_K, Mix::Q3_K_M, Mix::Q4_K_M, Mix::Q5_K_S, Mix::Q6_K, Mix::Q4_0, Mix::Q5_1}) {
    EXPECT_EQ(type_of(m, "output.weight"), TensorType::Q6_K) << mix_name(m);
    EXPECT_EQ(type_of(m, "token_embd.weight"), mix_base_type(m)) << mix_name(m);
  }
  EXPECT_EQ(type_of(Mix::Q8_0, "output.weight"), TensorType::Q8_0);
  EXPECT_EQ(type_of(Mix::F16, "output.weight"), TensorType::F16);
  // Tied embeddings (no output.weight): token_embd takes the output rule.
  tensors.erase(tensors.begin() + 1);
  EXPECT_EQ(type_of(Mix::Q4_K_M, "token_embd.weight"), TensorType::Q6_K);
}

TEST(QuantizeModel, KFallbacksFollowLlamaCpp) {
  // Rows of 896 (Qwen2.5-0.5B): not a multiple of 256, so the K types fall back.
  MixModel model{"qwen2", 1, 14, 2, 0};
  const std::vector<MixTensor> tensors{{"token_embd.weight", 896}, {"blk.0.attn_q.weight", 896},
                                       {"blk.0.attn_v.weight", 896}, {"blk.0.ffn_down.weight", 4864}};
  const auto m = mix_tensor_types(Mix::Q4_K_M, model, tensors);
  EXPECT_EQ(m[0].type, TensorType::Q8_0);  // tied output: not a whole Q6_K block -> Q8_0 directly
  EXPECT_FALSE(m[0].fallback);
  EXPECT_EQ(m[1].type, TensorType::Q5_0);  // Q4_K -> Q5_0
  EXPECT_TRUE(m[1].fallback);
  EXPECT_EQ(m[2].type, TensorType::Q8_0);  // Q6_K (layer 0 uses more bits) -> Q8_0
  EXPECT_TRUE(m[2].fallback);
  EXPECT_EQ(m[3].type, TensorType::Q6_K);  // 4864 = 19 x 256: fits
  EXPECT_FALSE(m[3].fallback);
}

TEST(QuantizeModel, FallsBackToF16ForRowsThatAreNotWholeBlocks) {
  gguf::Writer w;
  w.metadata().set("general.architecture", gguf::Value::string("llama"));
  ASSERT_TRUE(w.add_tensor({"a.weight", TensorType::F32, {64, 2}}));
  ASSERT_TRUE(w.add_tensor({"b.weight", TensorType::F32, {48, 2}}));
  ASSERT_TRUE(w.add_tensor({"norm.weight", TensorType::F32, {48}}));
  const std::string in = temp_path("small.gguf"), out = temp_path("small-q8.gguf");
  std::vector<float> values(128);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) / 16.0f - 4.0f;
  ASSERT_TRUE(w.write_file(in, [&](size_t index, gguf::TensorSink& sink) {
    const uint64_t n = w.tensors()[index].n_elements;
    return sink.write({reinterpret_cast<const uint8_t*>(values.data()), n * sizeof(float)});
  }));
  auto report = quantize_model(in, out, TensorType::Q8_0);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->converted, 1u);
  EXPECT_EQ(report->fallbacks, 1u);
  auto file = gguf::File::open(out);
  ASSERT_TRUE(file);
  EXPECT_EQ(file->find_tensor("a.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(file->find_tensor("b.weight")->type, TensorType::F16);
  EXPECT_EQ(file->find_tensor("norm.weight")->type, TensorType::F32);
  std::remove(in.c_str());
  std::remove(out.c_str());
}

TEST(QuantizeModel, ClearErrors) {
  const std::string out = temp_path("never.gguf");
  auto requant = quantize_model(kShared + "/models/synth-llama-q8_0.gguf", out, TensorType::Q4_0);
  ASSERT_FALSE(requant);
  EXPECT_EQ(requant.error().code, ErrorCode::InvalidArgument) << requant.error().message;
  EXPECT_NE(requant.error().message.find("is already q8_0"), std::string::npos) << requant.error().message;
  auto k = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, TensorType::Q4_K);
  ASSERT_FALSE(k);  // a type, not a mix: q4_k_s or q4_k_m?
  EXPECT_EQ(k.error().code, ErrorCode::InvalidArgument) << k.error().message;
  EXPECT_NE(k.error().message.find("cannot quantize to q4_k"), std::string::npos);
  auto iq = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, TensorType::IQ4_NL);
  ASSERT_FALSE(iq);
  EXPECT_NE(iq.error().message.find("q4_k_m"), std::string::npos) << iq.error().message;
  auto missing = quantize_model("/nonexistent.gguf", out, TensorType::Q8_0);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound) << missing.error().message;
  EXPECT_NE(missing.error().message.find("/nonexistent.gguf: cannot open"), std::string::npos);
}

}  // namespace
}  // namespace omni::model
