// A model's identity is the manifest CID of its content: computed without a store it equals what
// `omni shard` stores, one norm weight changed by 5 % (header untouched) gives another CID, and the
// cache in the data directory is used only while the file is the same one, unchanged.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gguf/reader.h"
#include "store/model_cid_cache.h"
#include "store/shard.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::ScratchDir;
const std::string kShared = OMNI_SHARED_DIR;

std::vector<std::string> shared_models() {
  std::vector<std::string> names;
  for (auto& e : std::filesystem::directory_iterator(kShared + "/models"))
    if (e.path().extension() == ".gguf") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Multiplies the first value of the F32 tensor `name` in the file at `path` by `factor`, in place:
// only tensor data changes, not a byte of the header.
void scale_first_value(const std::string& path, const std::string& name, float factor) {
  uint64_t offset = 0;
  {
    auto f = gguf::File::open(path);
    ASSERT_TRUE(f) << f.error().message;
    const gguf::TensorInfo* t = f->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t->type, gguf::TensorType::F32) << name;
    offset = static_cast<uint64_t>(f->tensor_data(*t).data() - f->bytes().data());
  }
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  float v = 0;
  io.seekg(static_cast<std::streamoff>(offset));
  io.read(reinterpret_cast<char*>(&v), sizeof v);
  v *= factor;
  io.seekp(static_cast<std::streamoff>(offset));
  io.write(reinterpret_cast<const char*>(&v), sizeof v);
  ASSERT_TRUE(io.good());
}

void set_mtime(const std::string& path, time_t seconds) {
  const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

class ModelCid : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelCid, ComputedWithoutAStoreEqualsTheShardedModelsCid) {
  const std::string path = kShared + "/models/" + GetParam();
  ScratchDir d;
  auto store = BlobStore::open(d.path());
  ASSERT_TRUE(store);
  auto file = gguf::File::open(path);
  ASSERT_TRUE(file);
  for (uint32_t chunk : {kDefaultChunkSize, 64u * 1024}) {
    auto stored = shard_model(path, **store, chunk);
    ASSERT_TRUE(stored) << stored.error().message;
    auto computed = compute_manifest(*file, path, chunk);
    ASSERT_TRUE(computed) << computed.error().message;
    EXPECT_EQ(computed->encode(), stored->manifest.encode()) << chunk;
    EXPECT_EQ(computed->cid(), stored->model) << chunk;
  }
  EXPECT_FALSE(compute_manifest(*file, path, 1024)) << "chunk sizes are checked as shard_model checks them";
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ModelCid, ::testing::ValuesIn(shared_models()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(ModelCidTamper, OneNormWeightTimes105IsAnotherModel) {
  ScratchDir d;
  const std::string original = kShared + "/models/synth-llama-q8_0.gguf";
  const std::string copy = d / "tampered.gguf";
  std::filesystem::copy_file(original, copy);
  scale_first_value(copy, "blk.1.ffn_norm.weight", 1.05f);
  auto a = gguf::File::open(original), b = gguf::File::open(copy);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->data_offset(), b->data_offset());
  ASSERT_EQ(a->bytes().size(), b->bytes().size());
  EXPECT_EQ(std::memcmp(a->bytes().data(), b->bytes().data(), a->data_offset()), 0) << "the header is untouched";
  auto ma = compute_manifest(*a, original), mb = compute_manifest(*b, copy);
  ASSERT_TRUE(ma && mb);
  EXPECT_NE(ma->cid(), mb->cid());
  EXPECT_EQ(ma->model.source_header_sha256, mb->model.source_header_sha256);
  // Exactly the shard holding the tensor differs.
  size_t differing = 0;
  for (size_t i = 0; i < ma->shards.size(); ++i)
    if (ma->shards[i].cid != mb->shards[i].cid) {
      ++differing;
      EXPECT_EQ(ma->shards[i].label(), "block 1");
    }
  EXPECT_EQ(differing, 1u);
}

TEST(ModelCidCache, HashesOnceAndAgainOnlyWhenTheFileChanges) {
  ScratchDir d;
  const std::string path = d / "model.gguf", cache = d / "data";
  std::filesystem::copy_file(kShared + "/models/synth-qwen2-q8_0.gguf", path);
  set_mtime(path, 1'700'000'000);
  Cid first;
  bool hashed = false;
  {
    auto file = gguf::File::open(path);
    ASSERT_TRUE(file);
    auto expected = compute_manifest(*file, path);
    ASSERT_TRUE(expected);
    auto computed = model_cid_of_file(*file, cache, &hashed);
    ASSERT_TRUE(computed) << computed.error().message;
    EXPECT_TRUE(hashed);
    EXPECT_EQ(*computed, expected->cid());
    first = *computed;
    auto second = model_cid_of_file(*file, cache, &hashed);
    ASSERT_TRUE(second);
    EXPECT_FALSE(hashed) << "an unchanged file is not hashed again";
    EXPECT_EQ(*second, first);
  }

  // Edited in place with the same size: the modification time differs, so the entry is stale.
  scale_first_value(path, "blk.0.attn_norm.weight", 1.05f);
  set_mtime(path, 1'700'000'100);
  auto edited = gguf::File::open(path);
  ASSERT_TRUE(edited);
  auto changed = model_cid_of_file(*edited, cache, &hashed);
  ASSERT_TRUE(changed);
  EXPECT_TRUE(hashed);
  EXPECT_NE(*changed, first);
  auto changed_expected = compute_manifest(*edited, path);
  ASSERT_TRUE(changed_expected);
  EXPECT_EQ(*changed, changed_expected->cid());

  // A corrupt entry (every entry file garbled) is recomputed, not an error.
  size_t entries = 0;
  for (auto& e : std::filesystem::directory_iterator(cache + "/model-cids")) {
    std::ofstream(e.path(), std::ios::trunc) << "omni-model-cid-1\n\x01garbage";
    ++entries;
  }
  EXPECT_EQ(entries, 1u) << "one entry per path";
  auto recomputed = model_cid_of_file(*edited, cache, &hashed);
  ASSERT_TRUE(recomputed) << recomputed.error().message;
  EXPECT_TRUE(hashed);
  EXPECT_EQ(*recomputed, *changed);
  auto cached_again = model_cid_of_file(*edited, cache, &hashed);
  ASSERT_TRUE(cached_again);
  EXPECT_FALSE(hashed) << "the recomputed entry was written back";

  // A cache that cannot be written (a file where the directory should be) costs a hash, no error.
  const std::string blocked = d / "blocked";
  std::ofstream(blocked) << "not a directory";
  auto unwritable = model_cid_of_file(*edited, blocked, &hashed);
  ASSERT_TRUE(unwritable) << unwritable.error().message;
  EXPECT_TRUE(hashed);
  EXPECT_EQ(*unwritable, *changed);
}

}  // namespace
}  // namespace omni::store
