// Blob transfer over the node transport: a fetching peer's connection to a node's blob store
// (proto/store.capnp through Gate.openBlobs of proto/node.capnp), on TLS 1.3 with the node's peer
// id checked, exactly as NodeConnection does for inference.
//
// This is the one place where src/net meets src/store (library omni_net_blobs): src/store knows
// the BlobStore service and the fetch engine but no sockets; omni_net knows TLS and the Gate but
// serves blobs only through the generic NodeOptions::blob_service hook.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/bandwidth.h"
#include "net/peer_address.h"
#include "net/tls.h"
#include "store/fetch.h"

namespace omni::net {

// Connects to `address` (TCP, TLS with its peer id checked when given, Gate.openBlobs with the
// "blobs" feature) within `timeout_s`, on a thread of its own. Errors are sentences: unreachable,
// "peer id mismatch: expected X but the peer presented Y", a node without blobs, a refused hello.
// `seen_peer_id`, if not null, receives the id the peer proved (for trust on first use). With
// `bandwidth` (a node fetching its shards), the transfer counts against the node's caps.
Result<std::shared_ptr<store::ChunkSource>> connect_blob_peer(const PeerAddress& address,
                                                              std::shared_ptr<TlsContext> tls, uint32_t timeout_s,
                                                              std::string* seen_peer_id = nullptr,
                                                              std::shared_ptr<Bandwidth> bandwidth = nullptr);

}  // namespace omni::net
