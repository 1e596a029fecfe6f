// One test per validation rule of the reader: each malformed file must give an Error naming the
// file and the problem, never a crash, hang or huge allocation.
#include <gtest/gtest.h>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "test_bytes.h"

namespace omni::gguf {
namespace {

using testing::RawGguf;

// Parses `bytes` and expects an error containing `fragment`.
void expect_error(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  auto file = File::parse(bytes, "bad.gguf");
  ASSERT_FALSE(file) << "parsed a file that should fail with: " << fragment;
  const std::string& msg = file.error().message;
  EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(fragment), std::string::npos) << "message: " << msg << "\nexpected: " << fragment;
}

// A valid two-tensor file; the tests below break one field of it at a time.
std::vector<uint8_t> valid_file() {
  RawGguf g;
  g.header(2, 2).kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
  g.tensor("a", {8}, 0, 0).tensor("b", {32, 2}, 8, 32);
  g.pad().zeros(32 + 68);
  return g.b;
}

TEST(Malformed, ValidBaseParses) {
  auto file = File::parse(valid_file(), "ok.gguf");
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->tensors().size(), 2u);
}

TEST(Malformed, EveryTruncationIsAnError) {
  auto full = valid_file();
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto file = File::parse(prefix, "bad.gguf");
    EXPECT_FALSE(file) << "prefix of " << n << " bytes parsed";
    if (!file && n >= 4) {
      EXPECT_EQ(file.error().code, ErrorCode::Corruption) << file.error().message;
    }
  }
}

TEST(Malformed, TooSmallAndBadMagic) {
  expect_error({}, "too small");
  expect_error({'G', 'G', 'U'}, "too small");
  auto b = valid_file();
  b[0] = 'X';
  expect_error(b, "bad magic 'XGUF'");
}

TEST(Malformed, Versions) {
  RawGguf v1;
  v1.header(0, 0, 1);
  expect_error(v1.b, "version 1 is not supported");
  RawGguf v4;
  v4.header(0, 0, 4);
  expect_error(v4.b, "unsupported GGUF version 4");
  RawGguf be;
  be.header(0, 0, 0x03000000u);
  expect_error(be.b, "big-endian");
}

TEST(Malformed, AbsurdCounts) {
  RawGguf t;
  t.header(1ull << 60, 0);
  expect_error(t.b, "tensor count 1152921504606846976 is impossible");
  RawGguf k;
  k.header(0, ~0ull);
  expect_error(k.b, "metadata key-value count");
}

TEST(Malformed, StringLengthPastEnd) {
  RawGguf g;
  g.header(0, 1).u64(1ull << 62).zeros(16);
  expect_error(g.b, "metadata key length 4611686018427387904 runs past the end");
  RawGguf v;
  v.header(0, 1).str("k").u32(8).u64(1000).put("abc", 3);
  expect_error(v.b, "string value length 1000 runs past the end");
}

TEST(Malformed, UnknownValueTypeAndBadBool) {
  RawGguf g;
  g.header(0, 1).str("k").u32(13).u32(0);
  expect_error(g.b, "'k' has unknown value type 13");
  RawGguf b;
  b.header(0, 1).str("flag").u32(7).u8(2);
  expect_error(b.b, "'flag' has a bool that is neither 0 nor 1");
  RawGguf ab;
  ab.header(0, 1).str("flags").u32(9).u32(7).u64(2).u8(0).u8(9);
  expect_error(ab.b, "'flags' has a bool");
}

TEST(Malformed, ArrayLengthsAndNesting) {
  RawGguf g;
  g.header(0, 1).str("arr").u32(9).u32(6).u64(1ull << 61).zeros(16);
  expect_error(g.b, "array length of 'arr' 2305843009213693952 is impossible");
  RawGguf s;
  s.header(0, 1).str("strs").u32(9).u32(8).u64(1000).zeros(16);
  expect_error(s.b, "array length of 'strs' 1000 is impossible");
  RawGguf bad_elem;
  bad_elem.header(0, 1).str("arr").u32(9).u32(77).u64(0);
  expect_error(bad_elem.b, "unknown value type 77");
  RawGguf deep;
  deep.header(0, 1).str("deep").u32(9);
  for (int i = 0; i < 40; ++i) deep.u32(9).u64(1);
  deep.u32(0).u64(0);
  expect_error(deep.b, "nests arrays deeper than 16");
}

TEST(Malformed, DuplicateKey) {
  RawGguf g;
  g.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  expect_error(g.b, "duplicate metadata key 'k'");
}

TEST(Malformed, Alignment) {
  RawGguf wrong_type;
  wrong_type.header(0, 1).str("general.alignment").u32(10).u64(32);
  expect_error(wrong_type.b, "general.alignment has type u64, expected u32");
  RawGguf not_pow2;
  not_pow2.header(0, 1).kv_u32("general.alignment", 48);
  expect_error(not_pow2.b, "general.alignment 48 is not a power of two");
  RawGguf zero;
  zero.header(0, 1).kv_u32("general.alignment", 0);
  expect_error(zero.b, "is not a power of two");
}

// Builds a file with one tensor described by the given fields and `data` bytes of data.
std::vector<uint8_t> one_tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type,
                                uint64_t offset, size_t data) {
  RawGguf g;
  g.header(1, 0).tensor(name, std::move(shape), type, offset).pad().zeros(data);
  return g.b;
}

TEST(Malformed, TensorNames) {
  expect_error(one_tensor("", {4}, 0, 0, 16), "empty tensor name");
  expect_error(one_tensor(std::string(64, 'n'), {4}, 0, 0, 16), "more than ggml's limit of 63");
  RawGguf dup;
  dup.header(2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad().zeros(64);
  expect_error(dup.b, "tensor 't': duplicate tensor name");
}

TEST(Malformed, TensorShapes) {
  expect_error(one_tensor("t", {}, 0, 0, 0), "has 0 dimensions, expected 1 to 4");
  expect_error(one_tensor("t", {1, 1, 1, 1, 1}, 0, 0, 4), "has 5 dimensions");
  expect_error(one_tensor("t", {1ull << 63}, 0, 0, 0), "dimension 0 is too large");
  expect_error(one_tensor("t", {1ull << 40, 1ull << 40}, 0, 0, 0), "element count overflows");
  expect_error(one_tensor("t", {1ull << 61, 2}, 28, 0, 0), "byte size overflows");  // f64: 8 bytes each
  expect_error(one_tensor("t", {40}, 8, 0, 64), "row length 40 is not a multiple of the q8_0 block size 32");
}

TEST(Malformed, TensorTypes) {
  expect_error(one_tensor("t", {32}, 4, 0, 64), "unknown tensor type 4");
  expect_error(one_tensor("t", {32}, 1000, 0, 64), "unknown tensor type 1000");
}

TEST(Malformed, TensorOffsets) {
  expect_error(one_tensor("t", {4}, 0, 8, 64), "data offset 8 is not a multiple of the alignment 32");
  expect_error(one_tensor("t", {4}, 0, 0, 8), "tensor 't' (16 bytes at data offset 0) runs past the end");
  expect_error(one_tensor("t", {4}, 0, 1ull << 62, 64), "runs past the end");
  expect_error(one_tensor("t", {4}, 0, ~0ull - 31, 64), "runs past the end");  // offset + size overflows
  RawGguf overlap;
  overlap.header(2, 0).tensor("a", {64}, 0, 0).tensor("b", {4}, 0, 64).pad().zeros(256);
  expect_error(overlap.b, "tensor 'b' overlaps the data of tensor 'a'");
  RawGguf no_data;
  no_data.header(1, 0).tensor("t", {4}, 0, 0);
  expect_error(no_data.b, "truncated file: the tensor data section starts past the end");
}

TEST(Malformed, OpenNamesMissingFile) {
  auto file = File::open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, ErrorCode::NotFound) << file.error().message;
  EXPECT_NE(file.error().message.find("/nonexistent/dir/model.gguf: cannot open"), std::string::npos);
  auto dir = File::open("/tmp");
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code, ErrorCode::InvalidArgument) << dir.error().message;
}

// Random byte flips of a real header must never crash (a light, deterministic fuzz in the suite;
// the libFuzzer target explores far more).
TEST(Malformed, RandomCorruptionsNeverCrash) {
  auto base = valid_file();
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    auto b = base;
    int flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < flips; ++f) b[next() % b.size()] = static_cast<uint8_t>(next());
    auto file = File::parse(b, "fuzz");
    if (file) {
      ++parsed;
      for (const auto& t : file->tensors()) ASSERT_LE(file->data_offset() + t.offset + t.n_bytes, b.size());
    }
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace omni::gguf
