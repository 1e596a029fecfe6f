// Fetching a sharded model from several peers over the node transport: connects to each peer's
// blob service (blob_peer.h) and runs the fetch engine (store/fetch.h) over those that answer.
// Used by `omni fetch` and by a node started from a model CID (swarm/node_runtime.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "model/model.h"
#include "net/bandwidth.h"
#include "net/node_info.h"
#include "store/blob_store.h"
#include "store/fetch.h"
#include "store/manifest.h"
#include "store/shard.h"

namespace omni::net {

struct PeerFetchOptions {
  std::string peers;     // [ID@]HOST:PORT or ID@relay:HOST:PORT,... of nodes serving blobs ("blobs")
  std::string data_dir;  // this side's identity key; empty: a throwaway key
  uint32_t window = 16;  // reads in flight per peer
  uint32_t timeout_s = 60;
  std::shared_ptr<Bandwidth> bandwidth;  // set: the transfers count against these caps (a node's)
  // Lines for the user: each peer skipped (and why), a peer's id learnt on first use, each peer
  // dropped during the fetch, and at the end the summary
  //   fetched N chunks (X MiB) in S s, R MiB/s; M chunks resumed, Q requests, B bad chunks
  std::function<void(const std::string&)> log;
  // The fetch's progress as it goes (from the engine's thread), and once more with `done` set
  // when it has ended, before the summary line.
  std::function<void(const store::FetchProgress&, bool done)> progress;
};

// Connects to every reachable peer of `options.peers` (TLS, peer ids checked; peers that are
// unreachable or refuse are logged and skipped), then fetches the manifest `model` and the shards
// `range` needs into `store` (verified, pinned, resumable). Errors: a malformed peer list
// (InvalidArgument), no reachable peer (Unavailable), no peer left for some chunks (each dropped
// peer with its reason), a full store or disk.
Result<store::Manifest> fetch_from_peers(store::BlobStore& store, const store::Cid& model,
                                         const store::ShardRange& range, const PeerFetchOptions& options);

// The identity (node_info.h) of a model loaded from the shards of `manifest`: its source file's,
// as a node or client using that file announces it (the manifest's CID, and the source's size and
// vocabulary size from the manifest, which a range without the embeddings shard cannot see).
ModelIdentity identify_sharded_model(const model::Model& model, const store::Manifest& manifest);

}  // namespace omni::net
