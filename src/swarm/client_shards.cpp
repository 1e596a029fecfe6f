#include "swarm/client_shards.h"

#include "net/peer_fetch.h"
#include "store/manifest.h"
#include "store/shard.h"
#include "store/sharded_model.h"

namespace omni::swarm {

Result<ClientShards> load_client_shards(store::BlobStore& store, const store::Cid& cid, Directory* directory,
                                        const ProviderFetchOptions& fetching) {
  const store::ShardRange shards{.block_begin = 0, .block_end = 0, .embeddings = true, .head = true};
  bool complete = false;
  if (auto have = store::load_manifest(store, cid)) {
    complete = true;
    // verify(): a shard damaged on disk is removed, and fetched again below.
    for (const auto* s : store::shards_for_range(*have, shards)) complete = store.verify(s->cid).ok() && complete;
  }
  if (!complete) {
    auto fetched = directory ? fetch_from_providers(store, *directory, cid, shards, fetching)
                             : net::fetch_from_peers(store, cid, shards, fetching.fetch);
    if (!fetched) return fetched.error();
  }
  auto manifest = store::load_manifest(store, cid);
  if (!manifest) return manifest.error();
  // The head's session runs blocks [n_layer, n_layer): the loaded range must contain that.
  const uint32_t n_layer = manifest->model.n_layer;
  auto loaded =
      store::load_model(store, cid, {.block_begin = n_layer, .block_end = n_layer, .embeddings = true, .head = true});
  if (!loaded) return loaded.error();
  ClientShards out;
  out.identity = net::identify_sharded_model(**loaded, *manifest);
  out.model = std::move(*loaded);
  return out;
}

}  // namespace omni::swarm
