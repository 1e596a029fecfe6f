// quantize_model against llama-quantize: the shared Q8_0 and Q4_0 models were made from the shared
// F16 model by llama.cpp, so converting that F16 file must reproduce their tensors byte for byte.
#include <gtest/gtest.h>

#include <algorithm>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "model/quantize_model.h"

namespace omni::model {
namespace {

using gguf::TensorType;
const std::string kShared = OMNI_SHARED_DIR;

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
  const std::string out = ::testing::TempDir() + "/q8.gguf";
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
}

TEST(QuantizeModel, ReproducesLlamaQuantizeQ4_0ExceptItsQ6KHead) {
  const std::string out = ::testing::TempDir() + "/q4.gguf";
  auto report = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, TensorType::Q4_0);
  ASSERT_TRUE(report) << report.error().message;
  auto ours = gguf::File::open(out);
  auto theirs = gguf::File::open(kShared + "/models/synth-llama-q4_0.gguf");
  ASSERT_TRUE(ours && theirs);
  std::vector<std::string> different;
  identical_tensors(*ours, *theirs, different);
  // llama-quantize writes the output head of a Q4_0 model as Q6_K; everything else matches.
  EXPECT_EQ(different, std::vector<std::string>{"output.weight"});
  EXPECT_EQ(theirs->find_tensor("output.weight")->type, TensorType::Q6_K);
  EXPECT_EQ(ours->find_tensor("output.weight")->type, TensorType::Q4_0);
}

TEST(QuantizeModel, FallsBackToF16ForRowsThatAreNotWholeBlocks) {
  gguf::Writer w;
  w.metadata().set("general.architecture", gguf::Value::string("llama"));
  ASSERT_TRUE(w.add_tensor({"a.weight", TensorType::F32, {64, 2}}));
  ASSERT_TRUE(w.add_tensor({"b.weight", TensorType::F32, {48, 2}}));
  ASSERT_TRUE(w.add_tensor({"norm.weight", TensorType::F32, {48}}));
  const std::string in = ::testing::TempDir() + "/small.gguf", out = ::testing::TempDir() + "/small-q8.gguf";
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
}

TEST(QuantizeModel, ClearErrors) {
  const std::string out = ::testing::TempDir() + "/never.gguf";
  auto requant = quantize_model(kShared + "/models/synth-llama-q8_0.gguf", out, TensorType::Q4_0);
  ASSERT_FALSE(requant);
  EXPECT_NE(requant.error().message.find("is already q8_0"), std::string::npos) << requant.error().message;
  auto k = quantize_model(kShared + "/models/synth-llama-f16.gguf", out, TensorType::Q4_K);
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().message.find("cannot quantize to q4_k"), std::string::npos);
  auto missing = quantize_model("/nonexistent.gguf", out, TensorType::Q8_0);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/nonexistent.gguf: cannot open"), std::string::npos);
}

}  // namespace
}  // namespace omni::model
