#include "store/sharded_model.h"

#include <vector>

#include "gguf/reader.h"

namespace omni::store {

ShardRange shard_range(const model::LoadRange& range) {
  return {.block_begin = range.block_begin, .block_end = range.block_end, .embeddings = range.embeddings,
          .head = range.head};
}

Result<std::unique_ptr<model::Model>> load_model(BlobStore& store, const Cid& model, const model::LoadRange& range) {
  auto manifest = load_manifest(store, model);
  if (!manifest) return manifest.error();
  std::vector<const ShardEntry*> needed = shards_for_range(*manifest, shard_range(range));
  if (needed.empty()) return Error{ErrorCode::InvalidArgument, "model " + model.to_string() + ": the range needs no shards"};
  std::vector<gguf::File> files;
  for (const ShardEntry* s : needed) {
    if (auto v = store.verify(s->cid); !v) return v.error().with_context("model " + model.to_string() + ", " + s->label() + " shard");
    auto f = gguf::File::open(store.blob_path(s->cid));
    if (!f) return f.error().with_context("model " + model.to_string() + ", " + s->label() + " shard");
    // Records the use for the store's LRU eviction.
    (void)store.touch(s->cid);
    files.push_back(std::move(*f));
  }
  return model::Model::from_files(std::move(files), range);
}

}  // namespace omni::store
