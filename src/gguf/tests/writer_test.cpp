#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

#include "gguf/reader.h"
#include "gguf/writer.h"

namespace omni::gguf {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

fs::path temp_dir() {
  fs::path dir = fs::temp_directory_path() / ("omni-gguf-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// Every shared file, read and written again, must be the same bytes.
TEST(Writer, SharedFilesRoundTripByteForByte) {
  std::vector<std::string> paths;
  for (const char* dir : {"/models", "/vocab"})
    for (const auto& e : fs::directory_iterator(std::string(OMNI_SHARED_DIR) + dir))
      if (e.path().extension() == ".gguf") paths.push_back(e.path().string());
  ASSERT_GE(paths.size(), 16u);
  for (const auto& path : paths) {
    auto file = File::open(path);
    ASSERT_TRUE(file) << file.error().message;
    auto writer = Writer::from_file(*file);
    ASSERT_TRUE(writer) << writer.error().message;
    auto bytes = writer->write_memory(Writer::copy_from(*file));
    ASSERT_TRUE(bytes) << bytes.error().message;
    ASSERT_EQ(bytes->size(), file->bytes().size()) << path;
    EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), file->bytes().begin())) << path;
  }
}

TEST(Writer, EveryValueTypeReadsBackIdentically) {
  Writer w;
  Metadata& md = w.metadata();
  md.set("general.architecture", Value::string("llama"));
  md.set("u8", Value::u8(7));
  md.set("i8", Value::i8(-7));
  md.set("u16", Value::u16(65535));
  md.set("i16", Value::i16(-32768));
  md.set("u32", Value::u32(123456789));
  md.set("i32", Value::i32(-123456789));
  md.set("u64", Value::u64(1ull << 63));
  md.set("i64", Value::i64(-(1ll << 62)));
  md.set("f32", Value::f32(-0.0f));
  md.set("f64", Value::f64(3.141592653589793));
  md.set("bool", Value::boolean(false));
  md.set("empty", Value::string(""));
  md.set("floats", Value::array(Array::of<float>(ValueType::FLOAT32, {1.f, -2.f, 1e-30f})));
  md.set("strings", Value::array(Array::of_strings({"x", "", std::string("\0z", 2)})));
  Array outer;
  outer.elem_type = ValueType::ARRAY;
  outer.arrays = {Array::of<int64_t>(ValueType::INT64, {-1, 2}), Array::of_strings({"deep"})};
  md.set("nested", Value::array(outer));
  md.set("u8", Value::u8(8));  // replaces in place, keeps the position

  std::mt19937 rng(1);
  std::vector<std::vector<uint8_t>> payloads;
  const std::vector<TensorSpec> specs = {{"a", TensorType::F32, {3, 5}},
                                         {"b", TensorType::Q8_0, {64, 2}},
                                         {"c", TensorType::Q4_K, {256}},
                                         {"d", TensorType::F16, {1, 1, 1, 7}}};
  for (const auto& s : specs) {
    auto idx = w.add_tensor(s);
    ASSERT_TRUE(idx) << idx.error().message;
    std::vector<uint8_t> p(w.tensors()[*idx].n_bytes);
    for (auto& x : p) x = static_cast<uint8_t>(rng());
    payloads.push_back(std::move(p));
  }
  auto bytes = w.write_memory([&](size_t i, TensorSink& sink) {
    // Two writes per tensor: the sink must concatenate them.
    auto& p = payloads[i];
    size_t half = p.size() / 2;
    if (auto r = sink.write({p.data(), half}); !r) return r;
    return sink.write({p.data() + half, p.size() - half});
  });
  ASSERT_TRUE(bytes) << bytes.error().message;

  auto file = File::parse(*bytes, "mem");
  ASSERT_TRUE(file) << file.error().message;
  ASSERT_EQ(file->metadata().size(), md.size());
  for (size_t i = 0; i < md.size(); ++i) {
    EXPECT_EQ(file->metadata().entries()[i].key, md.entries()[i].key);
    EXPECT_TRUE(file->metadata().entries()[i].value == md.entries()[i].value) << md.entries()[i].key;
  }
  EXPECT_EQ(file->metadata().entries()[1].key, "u8");
  EXPECT_EQ(*file->metadata().find("u8")->as_uint(), 8u);
  ASSERT_EQ(file->tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = file->tensors()[i];
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.type, specs[i].type);
    EXPECT_EQ(t.shape, specs[i].shape);
    EXPECT_EQ(t.offset % 32, 0u);
    auto data = file->tensor_data(t);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), payloads[i].begin(), payloads[i].end())) << t.name;
  }
  // Rewriting what was read gives the same bytes.
  auto again = Writer::from_file(*file)->write_memory(Writer::copy_from(*file));
  EXPECT_EQ(*again, *bytes);
}

TEST(Writer, RejectsBadTensorsAndShortSources) {
  Writer w;
  EXPECT_FALSE(w.add_tensor({"", TensorType::F32, {1}}));
  EXPECT_FALSE(w.add_tensor({std::string(64, 'x'), TensorType::F32, {1}}));
  EXPECT_FALSE(w.add_tensor({"q", TensorType::Q8_0, {33}}));
  EXPECT_FALSE(w.add_tensor({"s", TensorType::F32, {}}));
  EXPECT_FALSE(w.add_tensor({"s", TensorType::F32, {1, 1, 1, 1, 1}}));
  EXPECT_FALSE(w.add_tensor({"o", TensorType::F32, {1ull << 40, 1ull << 40}}));
  EXPECT_FALSE(w.add_tensor({"u", static_cast<TensorType>(5), {32}}));
  ASSERT_TRUE(w.add_tensor({"t", TensorType::F32, {4}}));
  EXPECT_FALSE(w.add_tensor({"t", TensorType::F32, {4}}));
  auto short_source = w.write_memory([](size_t, TensorSink& sink) {
    uint8_t b[8] = {};
    return sink.write(b);
  });
  ASSERT_FALSE(short_source);
  EXPECT_EQ(short_source.error().code, ErrorCode::Internal) << short_source.error().message;
  EXPECT_NE(short_source.error().message.find("wrote 8 of its 16 bytes"), std::string::npos);
  auto long_source = w.write_memory([](size_t, TensorSink& sink) {
    uint8_t b[20] = {};
    return sink.write(b);
  });
  EXPECT_FALSE(long_source);
  w.metadata().set("general.alignment", Value::u32(48));
  EXPECT_FALSE(w.alignment());
}

TEST(Writer, FileIsAtomicAndSparseFilesReadAsZeros) {
  fs::path dir = temp_dir();
  std::string path = (dir / "model.gguf").string();
  Writer w;
  w.metadata().set("general.architecture", Value::string("llama"));
  ASSERT_TRUE(w.add_tensor({"big", TensorType::Q8_0, {4096, 1024}}));
  ASSERT_TRUE(w.add_tensor({"small", TensorType::F32, {3}}));
  auto r = w.write_file(path, [](size_t, TensorSink&) -> Result<void> { return {}; }, /*sparse=*/true);
  ASSERT_TRUE(r) << r.error().message;
  auto file = File::open(path);
  ASSERT_TRUE(file) << file.error().message;
  uint64_t expected_size = file->data_offset() + 4096ull * 1024 / 32 * 34 + 32;
  EXPECT_EQ(fs::file_size(path), expected_size);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, expected_size / 4);  // mostly holes
  auto data = file->tensor_data(*file->find_tensor("big"));
  EXPECT_TRUE(std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; }));

  // A failing source leaves the old file untouched and no temporary behind.
  auto before = read_all(path);
  auto failed = w.write_file(path, [](size_t, TensorSink&) -> Result<void> { return Error{"source broke"}; });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "source broke");
  EXPECT_EQ(read_all(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

// A full disk, emulated with a file-size limit (EFBIG) so it needs no root or tmpfs: a clear error,
// no partial file visible.
TEST(Writer, FullDiskGivesClearErrorAndNoPartialFile) {
  fs::path dir = temp_dir();
  std::string path = (dir / "full.gguf").string();
  Writer w;
  ASSERT_TRUE(w.add_tensor({"t", TensorType::F32, {1 << 20}}));
  struct rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1 << 20;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::vector<uint8_t> payload(4 << 20, 1);
  auto r = w.write_file(path, [&](size_t, TensorSink& sink) { return sink.write(payload); });
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
  EXPECT_NE(r.error().message.find("cannot write"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace omni::gguf
