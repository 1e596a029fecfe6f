// The part of a sharded model that a swarm client computes itself: the token embeddings (with the
// tokenizer and metadata) and the output norm and head. A client that knows only the model's CID
// (omni run -m CID, omni gateway) fetches these shards, and no block, into its store and loads them
// as a model of no blocks; the blocks run on the swarm's nodes.
#pragma once

#include <memory>

#include "base/result.h"
#include "model/model.h"
#include "net/node_info.h"
#include "store/blob_store.h"
#include "store/cid.h"
#include "swarm/directory.h"
#include "swarm/provider_fetch.h"

namespace omni::swarm {

struct ClientShards {
  std::unique_ptr<model::Model> model;  // embeddings and head only
  net::ModelIdentity identity;          // the source file's, which the nodes announce
};

// Loads the client's shards of `cid` from `store`, first fetching those it lacks: from the
// providers in `directory`, or from `fetching.fetch.peers` when `directory` is null. The model does
// not need the store afterwards. Errors: fetch_from_providers' / net::fetch_from_peers', and the
// store's (a corrupt or unloadable manifest or shard).
Result<ClientShards> load_client_shards(store::BlobStore& store, const store::Cid& cid, Directory* directory,
                                        const ProviderFetchOptions& fetching);

}  // namespace omni::swarm
