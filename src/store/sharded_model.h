// Loading a model (or a block range of it) for the engine from its shards in a store. The one
// part of src/store that needs src/model: it lives in its own library (omni_store_model), so that
// the blob store, the manifests and the fetch engine (omni_store) do not pull in the engine.
#pragma once

#include <memory>

#include "base/result.h"
#include "model/model.h"
#include "store/blob_store.h"
#include "store/cid.h"
#include "store/shard.h"

namespace omni::store {

// The shards a model::LoadRange needs (the same fields).
ShardRange shard_range(const model::LoadRange& range);

// Loads `range` of the model from its shards in the store (all must be present): verifies each
// against its CID (BlobStore::verify: hashed once, then trusted while the file is unchanged), maps
// them, no copy. Errors: no manifest `model` in the store, a manifest that does not match its CID,
// a missing or unreadable shard, a shard whose bytes do not match its CID (Corruption, naming it;
// it is removed from the store), weights the engine refuses.
Result<std::unique_ptr<model::Model>> load_model(BlobStore& store, const Cid& model,
                                                 const model::LoadRange& range = {});

}  // namespace omni::store
