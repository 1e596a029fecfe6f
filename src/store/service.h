// The blob transfer service (proto/store.capnp) as Cap'n Proto objects, independent of transport.
//
// This library knows Cap'n Proto but no sockets, TLS or identities: the secured node transport of
// src/net carries it (the node server serves a BlobService through NodeOptions::blob_service;
// net/blob_peer.h opens fetching connections). Keeping the layers this way round lets src/store stay below src/net. Nothing here
// trusts the peer: every byte a remote ChunkSource returns is verified by the Fetcher against the
// manifest, whose bytes are checked against the CID the user asked for.
#pragma once

#include <capnp/capability.h>
#include <kj/async-io.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "store/blob_store.h"
#include "store/fetch.h"

namespace omni::store {

// The serving side: answers proto::BlobStore calls for `store`'s complete blobs, each verified
// against its CID before it is served (BlobStore::verify): a blob changed or damaged on disk is
// reported as not held (stat) or "failed verification" (read), removed, and logged through `log`
// with the details, which stay local. Reads are answered
// from a read-only mapping of the blob and the reply references the mapped bytes (no copy into the
// message). Mappings are kept until the BlobService is destroyed, because a reply may still sit in
// a connection's write queue; blobs are immutable, so a mapping never goes stale (an evicted blob's
// space is freed when the service ends). The BlobService must outlive every connection holding one
// of its capabilities, and `store` must outlive the BlobService. Counters may be read from any
// thread; everything else runs on the event loop of the connections.
class BlobService {
 public:
  explicit BlobService(BlobStore& store, std::function<void(const std::string&)> log = nullptr);
  ~BlobService();
  BlobService(const BlobService&) = delete;
  BlobService& operator=(const BlobService&) = delete;

  // A new proto::BlobStore capability (one per connection is fine; they share the mappings).
  capnp::Capability::Client client();
  uint64_t reads_served() const { return reads_.load(); }
  uint64_t bytes_served() const { return bytes_.load(); }

  struct Impl;

 private:
  BlobStore& store_;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> reads_{0}, bytes_{0};
};

// One connection to a serving peer, owned by a ChunkSource's event-loop thread.
class PeerLink {
 public:
  virtual ~PeerLink() noexcept(false) = default;  // kj objects inside may throw while unwinding
  // The peer's BlobStore capability (proto::BlobStore).
  virtual capnp::Capability::Client blobs() = 0;
  // Resolves when the connection ends (all reads in flight then fail).
  virtual kj::Promise<void> on_disconnect() = 0;
};

// Opens a PeerLink on the calling thread's event loop; failures are kj exceptions whose
// descriptions are sentences (they become the connect_peer error).
using PeerConnector = std::function<kj::Promise<kj::Own<PeerLink>>(kj::AsyncIoContext& io)>;

// A ChunkSource named `name` that runs its own kj event loop on its own thread, opens its link
// with `connect` there, and keeps reads in flight on it (read() only queues; it never waits for the
// loop). Each answer is copied once, out of the message into a ChunkBuffer, on that thread.
// Returns once connected; errors say why the peer could not be reached.
Result<std::shared_ptr<ChunkSource>> connect_peer(const std::string& name, PeerConnector connect);

}  // namespace omni::store
