// Sharding every shared model: shards are valid GGUFs with byte-identical tensor data, sharding is
// deterministic and deduplicated, verification catches a flipped bit, and a model loaded from its
// shards computes bit-identical logits to the original file over several greedy steps.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "gguf/reader.h"
#include "model/model.h"
#include "store/shard.h"
#include "store/sharded_model.h"
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

// Greedy decoding for `steps` tokens; returns the logits of every step, concatenated.
std::vector<float> greedy_logits(const model::Model& m, int steps) {
  kernels::ThreadPool pool(2);
  auto s = model::Session::create(m, 0, m.config().n_layer, 64);
  EXPECT_TRUE(s) << s.error().message;
  std::vector<int32_t> tokens{1, 450, 4996, 17354};
  for (auto& t : tokens) t %= static_cast<int32_t>(m.config().n_vocab);
  std::vector<float> all, logits;
  for (int i = 0; i < steps; ++i) {
    auto r = (*s)->forward(tokens, {}, model::Output::LastLogits, logits, pool);
    EXPECT_TRUE(r) << r.error().message;
    all.insert(all.end(), logits.begin(), logits.end());
    tokens = {static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
  }
  return all;
}

class Sharding : public ::testing::TestWithParam<std::string> {};

TEST_P(Sharding, ShardsAreFaithfulAndLoadBitIdentically) {
  const std::string path = kShared + "/models/" + GetParam();
  ScratchDir d;
  auto store = BlobStore::open(d.path());
  ASSERT_TRUE(store);
  // A small chunk size so that shards have several chunks even for these small models.
  auto rep = shard_model(path, **store, 64 * 1024);
  ASSERT_TRUE(rep) << rep.error().message;
  const Manifest& m = rep->manifest;
  auto src = gguf::File::open(path);
  ASSERT_TRUE(src);
  EXPECT_EQ(m.shards.size(), m.model.n_layer + 2u);
  EXPECT_EQ(m.model.n_tensors, src->tensors().size());

  // Every source tensor is in exactly one shard, with the same type, shape and bytes.
  size_t tensors_seen = 0;
  for (const ShardEntry& s : m.shards) {
    auto f = gguf::File::open((*store)->blob_path(s.cid));
    ASSERT_TRUE(f) << s.label() << ": " << f.error().message;
    EXPECT_EQ(f->alignment(), src->alignment());
    EXPECT_EQ(f->tensors().size(), s.n_tensors);
    EXPECT_EQ(f->bytes().size(), s.size);
    EXPECT_EQ(Cid::of(f->bytes()), s.cid);
    for (const auto& t : f->tensors()) {
      const gguf::TensorInfo* o = src->find_tensor(t.name);
      ASSERT_NE(o, nullptr) << t.name;
      EXPECT_EQ(t.type, o->type);
      EXPECT_EQ(t.shape, o->shape);
      auto a = f->tensor_data(t), b = src->tensor_data(*o);
      ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << t.name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % src->alignment(), 0u);
      if (s.role == ShardRole::Block) {
        EXPECT_TRUE(t.name.starts_with("blk." + std::to_string(s.block) + "."));
      }
      ++tensors_seen;
    }
    // Metadata: all of it in the embeddings shard, all but the tokenizer elsewhere.
    for (const auto& e : src->metadata().entries()) {
      bool expect = s.role == ShardRole::Embeddings || !e.key.starts_with("tokenizer.");
      EXPECT_EQ(f->metadata().contains(e.key), expect) << s.label() << " " << e.key;
    }
  }
  EXPECT_EQ(tensors_seen, src->tensors().size());
  EXPECT_TRUE(verify_model(**store, rep->model));

  // Deterministic and deduplicated: sharding again adds nothing and names the same model.
  auto again = shard_model(path, **store, 64 * 1024);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->model, rep->model);
  EXPECT_EQ(again->new_bytes, 0u);
  EXPECT_EQ(again->reused_shards, m.shards.size());

  // Loading from shards: same logits, bit for bit, as the original file.
  auto original = model::Model::load(path);
  ASSERT_TRUE(original) << original.error().message;
  auto sharded = load_model(**store, rep->model);
  ASSERT_TRUE(sharded) << sharded.error().message;
  EXPECT_GT((*sharded)->more_files().size(), 0u);
  const auto expected = greedy_logits(**original, 4);
  const auto got = greedy_logits(**sharded, 4);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) == 0);

  // A block-range node loads only its shards (no embeddings, no head) and matches too.
  const uint32_t n = m.model.n_layer, cut = n / 2;
  auto middle = load_model(**store, rep->model, {.block_begin = cut, .block_end = n, .embeddings = false, .head = true});
  ASSERT_TRUE(middle) << middle.error().message;
  EXPECT_EQ(shards_for_range(m, {.block_begin = 1, .block_end = 2, .embeddings = false, .head = false}).size(), 1u);

  // A flipped bit in one stored shard is caught by verification, and named.
  const ShardEntry& victim = m.shards[1];
  int fd = ::open((*store)->blob_path(victim.cid).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(victim.size / 2)), 1);
  byte ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(victim.size / 2)), 1);
  ::close(fd);
  auto bad = verify_model(**store, rep->model);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Corruption) << bad.error().message;
  EXPECT_NE(bad.error().message.find(victim.label()), std::string::npos) << bad.error().message;
}

INSTANTIATE_TEST_SUITE_P(SharedModels, Sharding, ::testing::ValuesIn(shared_models()),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.size() - 5);
                           for (auto& c : n) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Sharding, BadInputIsAClearError) {
  ScratchDir d;
  auto store = BlobStore::open(d.path());
  ASSERT_TRUE(store);
  EXPECT_FALSE(shard_model(d / "missing.gguf", **store));
  auto missing = load_model(**store, Cid::of({}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound) << missing.error().message;
  // A blob that is not a manifest.
  std::vector<uint8_t> junk(64, 7);
  auto c = (*store)->put(junk);
  ASSERT_TRUE(c);
  EXPECT_FALSE(load_manifest(**store, *c));
}

}  // namespace
}  // namespace omni::store
