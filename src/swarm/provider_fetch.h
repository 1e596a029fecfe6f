// Fetching a sharded model's blobs from the nodes that announce them in the swarm's directory
// (provider records, provider_record.h), for a client or a node that knows only the model's CID.
//
// The manifest comes from any provider; each shard then from the providers that say they hold it
// (up to 8 of them, drawn at random, at once: net/peer_fetch.h over the node transport, peer ids
// pinned from the records), so a client that needs two shards talks only to nodes that have them. Everything fetched is
// verified against the manifest, and the manifest against the CID.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "net/peer_fetch.h"
#include "store/blob_store.h"
#include "store/cid.h"
#include "store/manifest.h"
#include "store/shard.h"
#include "swarm/directory.h"

namespace omni::swarm {

struct ProviderFetchOptions {
  // The fetch itself: identity, window, timeout, log and progress (its `peers` is not used).
  net::PeerFetchOptions fetch;
  std::string self_peer_id;         // this node's own records are skipped
  uint32_t lookup_wait_ms = 15000;  // how long to wait for providers of every needed shard to show
};

// Fetches the manifest `model` (unless the store has it) and the shards of `range` the store lacks.
// Errors: no provider of the model, or of some shard, within lookup_wait_ms (NotFound, naming it);
// the fetch's errors (net::fetch_from_peers).
Result<store::Manifest> fetch_from_providers(store::BlobStore& store, Directory& directory, const store::Cid& model,
                                             const store::ShardRange& range, const ProviderFetchOptions& options);

}  // namespace omni::swarm
