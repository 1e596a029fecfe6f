#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gguf/reader.h"
#include "test_bytes.h"

namespace omni::gguf {
namespace {

using testing::RawGguf;
namespace fs = std::filesystem;

std::vector<std::string> shared_gguf_files() {
  std::vector<std::string> out;
  for (const char* dir : {"/models", "/vocab"})
    for (const auto& e : fs::directory_iterator(std::string(OMNI_SHARED_DIR) + dir))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Reader, OpensEverySharedFile) {
  auto files = shared_gguf_files();
  ASSERT_GE(files.size(), 16u);
  for (const auto& path : files) {
    auto file = File::open(path);
    ASSERT_TRUE(file) << file.error().message;
    EXPECT_EQ(file->version(), 3u);
    EXPECT_TRUE(file->metadata().contains("tokenizer.ggml.model")) << path;
  }
}

// Checks against values read by an independent, byte-level walk of the same file below.
TEST(Reader, SharedModelMetadataAndTensors) {
  auto file = File::open(std::string(OMNI_SHARED_DIR) + "/models/synth-qwen2-q8_0.gguf");
  ASSERT_TRUE(file) << file.error().message;
  const Metadata& md = file->metadata();
  EXPECT_EQ(*md.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(*md.get_uint("qwen2.block_count"), 3u);
  EXPECT_EQ(*md.get_uint("qwen2.attention.head_count_kv"), 2u);
  EXPECT_FLOAT_EQ(static_cast<float>(*md.get_float("qwen2.rope.freq_base")), 1e6f);
  const Array* tokens = *md.get_array("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens->elem_type, ValueType::STRING);
  EXPECT_EQ(tokens->size(), 50257u);
  EXPECT_EQ(tokens->strings[0], "!");
  const Array* types = *md.get_array("tokenizer.ggml.token_type");
  EXPECT_EQ(types->elem_type, ValueType::INT32);
  EXPECT_EQ(types->size(), 50257u);

  ASSERT_EQ(file->tensors().size(), 39u);
  const TensorInfo* q = file->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, TensorType::Q8_0);
  EXPECT_EQ(q->shape, (std::vector<uint64_t>{256, 256}));
  EXPECT_EQ(q->n_bytes, 256u * 256 / 32 * 34);
  const TensorInfo* bias = file->find_tensor("blk.0.attn_k.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->type, TensorType::F32);
  EXPECT_EQ(bias->shape, (std::vector<uint64_t>{64}));
  EXPECT_EQ(file->find_tensor("no.such.tensor"), nullptr);

  // Zero copy: tensor views point into the mapping, at data_offset + offset.
  auto data = file->tensor_data(*q);
  EXPECT_EQ(data.data(), file->bytes().data() + file->data_offset() + q->offset);
  EXPECT_EQ(file->data_offset() % file->alignment(), 0u);

  // Independent check of the first tensor-info record: walk the raw bytes of the header.
  std::ifstream in(std::string(OMNI_SHARED_DIR) + "/models/synth-qwen2-q8_0.gguf", std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(raw.size(), file->bytes().size());
  EXPECT_EQ(std::memcmp(raw.data() + file->data_offset() + q->offset, data.data(), data.size()), 0);
}

TEST(Reader, AllValueTypesAndNestedArrays) {
  RawGguf g;
  g.header(0, 14);
  g.str("u8").u32(0).u8(200);
  g.str("i8").u32(1).u8(0xff);
  g.str("u16").u32(2).put("\x34\x12", 2);
  g.str("i16").u32(3).put("\xfe\xff", 2);
  g.str("u32").u32(4).u32(4000000000u);
  g.str("i32").u32(5).u32(static_cast<uint32_t>(-7));
  g.str("f32").u32(6).f32(1.5f);
  g.str("bool").u32(7).u8(1);
  g.str("str").u32(8).str("héllo");
  g.str("u64").u32(10).u64(~0ull);
  g.str("i64").u32(11).u64(static_cast<uint64_t>(-9));
  double d = -2.25;
  g.str("f64").u32(12).put(&d, 8);
  g.str("arr").u32(9).u32(8).u64(2).str("a").str("bc");
  // array of arrays: [[1, 2], [3]] of u16
  g.str("nested").u32(9).u32(9).u64(2).u32(2).u64(2).put("\x01\x00\x02\x00", 4).u32(2).u64(1).put("\x03\x00", 2);
  auto file = File::parse(g.b, "mem");
  ASSERT_TRUE(file) << file.error().message;
  const Metadata& md = file->metadata();
  EXPECT_EQ(*md.find("u8")->as_uint(), 200u);
  EXPECT_EQ(*md.find("i8")->as_int(), -1);
  EXPECT_EQ(*md.find("u16")->as_uint(), 0x1234u);
  EXPECT_EQ(*md.find("i16")->as_int(), -2);
  EXPECT_EQ(*md.find("u32")->as_uint(), 4000000000u);
  EXPECT_EQ(*md.find("i32")->as_int(), -7);
  EXPECT_EQ(*md.find("f32")->as_float(), 1.5);
  EXPECT_EQ(*md.find("bool")->as_bool(), true);
  EXPECT_EQ(*md.find("str")->as_string(), "héllo");
  EXPECT_EQ(*md.find("u64")->as_uint(), ~0ull);
  EXPECT_FALSE(md.find("u64")->as_int());  // does not fit in int64
  EXPECT_EQ(*md.find("i64")->as_int(), -9);
  EXPECT_FALSE(md.find("i64")->as_uint());
  EXPECT_EQ(*md.find("f64")->as_float(), -2.25);
  EXPECT_FALSE(md.find("f64")->as_int());
  const Array* arr = md.find("arr")->as_array();
  ASSERT_NE(arr, nullptr);
  EXPECT_EQ(arr->strings, (std::vector<std::string>{"a", "bc"}));
  const Array* nested = md.find("nested")->as_array();
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(*nested->arrays[0].to_ints(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(*nested->arrays[1].to_ints(), (std::vector<int64_t>{3}));
  EXPECT_EQ(md.find("nested")->to_display(), "[[1, 2], [3]]");
  // Typed look-ups explain what is wrong.
  EXPECT_EQ(md.get_uint("str").error().code, ErrorCode::Corruption) << md.get_uint("str").error().message;
  EXPECT_EQ(md.get_string("absent").error().code, ErrorCode::NotFound) << md.get_string("absent").error().message;
  EXPECT_NE(md.get_string("absent").error().message.find("'absent' is missing"), std::string::npos);
}

TEST(Reader, Version2AndCustomAlignment) {
  RawGguf g;
  g.header(2, 1, 2).str("general.alignment").u32(4).u32(64);
  g.tensor("a", {4}, 0, 0).tensor("b", {32}, 8, 64);
  g.pad(64).zeros(64 + 34);
  auto file = File::parse(g.b, "mem");
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->version(), 2u);
  EXPECT_EQ(file->alignment(), 64u);
  EXPECT_EQ(file->data_offset() % 64, 0u);
  EXPECT_EQ(file->tensors()[1].n_bytes, 34u);
  EXPECT_EQ(file->tensor_data(file->tensors()[1]).size(), 34u);
}

TEST(Reader, TypeTable) {
  // Byte sizes follow from each block layout (ggml-common.h): scales + packed quants.
  struct Case { TensorType t; uint32_t block; uint32_t bytes; };
  const Case cases[] = {
      {TensorType::F32, 1, 4}, {TensorType::F16, 1, 2}, {TensorType::BF16, 1, 2},
      {TensorType::Q4_0, 32, 2 + 16}, {TensorType::Q4_1, 32, 4 + 16}, {TensorType::Q5_0, 32, 2 + 4 + 16},
      {TensorType::Q5_1, 32, 4 + 4 + 16}, {TensorType::Q8_0, 32, 2 + 32}, {TensorType::Q8_1, 32, 4 + 32},
      {TensorType::Q2_K, 256, 16 + 64 + 4}, {TensorType::Q3_K, 256, 32 + 64 + 12 + 2},
      {TensorType::Q4_K, 256, 4 + 12 + 128}, {TensorType::Q5_K, 256, 4 + 12 + 32 + 128},
      {TensorType::Q6_K, 256, 128 + 64 + 16 + 2}, {TensorType::Q8_K, 256, 4 + 256 + 32},
      {TensorType::IQ4_NL, 32, 2 + 16}, {TensorType::IQ4_XS, 256, 2 + 2 + 4 + 128},
  };
  for (const auto& c : cases) {
    auto t = tensor_type_traits(c.t);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->block_size, c.block) << t->name;
    EXPECT_EQ(t->type_size, c.bytes) << t->name;
    EXPECT_EQ(tensor_type_from_name(t->name), c.t);
  }
  EXPECT_EQ(tensor_type_from_name("Q4_K"), TensorType::Q4_K);
  EXPECT_FALSE(tensor_type_traits(4u));  // removed Q4_2
  EXPECT_FALSE(tensor_type_from_name("q4_2"));
  EXPECT_EQ(*row_bytes(TensorType::Q4_K, 512), 288u);
  EXPECT_FALSE(row_bytes(TensorType::Q4_K, 100));
}

}  // namespace
}  // namespace omni::gguf
