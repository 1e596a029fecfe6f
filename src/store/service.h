// The blob transfer service (proto/store.capnp) over Cap'n Proto RPC on plain TCP.
//
// Interim transport: src/net (TLS 1.3 with Ed25519 identities) was not usable when this was
// written; the BlobStore interface is transport-independent and is meant to move onto the secured
// connection, after which this plain-TCP glue goes away. Nothing here trusts the peer: every byte a
// RemotePeer returns is verified by the Fetcher against the manifest.
//
// Both sides run their own kj event loop on their own thread, so callers (the Fetcher, the CLI)
// need no kj knowledge.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "store/blob_store.h"
#include "store/fetch.h"

namespace omni::store {

class BlobServer {
 public:
  // Serves `store`'s complete blobs on `address` ("127.0.0.1:0" picks a port). The store must
  // outlive the server.
  static Result<std::unique_ptr<BlobServer>> start(BlobStore& store, const std::string& address);
  virtual ~BlobServer() = default;
  virtual uint16_t port() const = 0;
  virtual uint64_t reads_served() const = 0;
};

// A peer at `address` ("host:port"), connected now; errors say why it could not be reached.
Result<std::shared_ptr<ChunkSource>> connect_peer(const std::string& address);

}  // namespace omni::store
