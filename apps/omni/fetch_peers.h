// Fetching a sharded model from peers over the node transport, shared by `omni fetch` and
// `omni node --model CID` (implemented in cmd_fetch.cpp).
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "store/shard.h"
#include "store/blob_store.h"
#include "store/manifest.h"

namespace omni::cli {

struct PeerFetchOptions {
  std::string peers;     // [ID@]HOST:PORT or ID@relay:HOST:PORT,... of nodes serving blobs ("blobs")
  std::string data_dir;  // this side's identity key; empty: a throwaway key
  uint32_t window = 16;  // reads in flight per peer
  uint32_t timeout_s = 60;
  const char* command = "fetch";  // names the command in messages ("omni fetch: ...")
};

// Connects to every reachable peer (TLS, peer ids checked; unreachable or refusing peers are
// reported on stderr and skipped), fetches the manifest `model` and the shards `range` needs into
// `store` (verified, pinned, resumable), reports progress and a summary line on stderr:
//   fetched N chunks (X MiB) in S s, R MiB/s; M chunks resumed, Q requests, B bad chunks
// Errors: no reachable peer, no peer left for some chunks (each dropped peer with its reason), a
// full store or disk.
Result<store::Manifest> fetch_from_peers(store::BlobStore& store, const store::Cid& model,
                                         const store::ShardRange& range, const PeerFetchOptions& options);

}  // namespace omni::cli
