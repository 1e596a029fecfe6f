// NodeConnection: a client's connection to one node: TCP (straight to the node, or through its
// relay), TLS (peer id checked, end to end), Cap'n Proto RPC, and the version/feature handshake
// (Gate.hello). Used by `omni run` and by nodes forwarding to the next hop of a chain.
//
// Lives on the kj event loop that created it; dropping it closes the connection (and so frees
// every session opened through it on the node). All failures are kj exceptions carrying an Error
// (net/errors.h): peer id mismatch, version refused, unreachable address, timeout.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>
#include <vector>

#include "net/bandwidth.h"
#include "net/errors.h"
#include "net/node_info.h"
#include "net/peer_address.h"
#include "net/tls.h"
#include "proto/node.capnp.h"

namespace omni::net {

// Largest RPC message a peer reads by default (hidden states of 512 tokens x 8192 in F32 take 16 MiB).
inline constexpr uint64_t kDefaultMaxMessageBytes = 64ull << 20;

capnp::ReaderOptions reader_options(uint64_t max_message_bytes);

// `promise`, or a DeadlineExceeded error "<what> timed out after N s" if it takes longer than `timeout`.
template <class T>
kj::Promise<T> with_timeout(kj::Timer& timer, kj::Duration timeout, const std::string& what, kj::Promise<T> promise);

// A TCP connection to "HOST:PORT" with TCP_NODELAY (one small message per token: Nagle's delay
// would only add latency).
kj::Promise<kj::Own<kj::AsyncIoStream>> connect_tcp(kj::AsyncIoProvider& io, const std::string& host_port);

// The byte stream to `address`'s node, ready for TLS: TCP to the node, or for a relayed address
// TCP to the relay, the CONNECT line and the relay's OK (relay_preamble.h). A relay's refusal is an
// Unavailable error "the relay says: ...". With `bandwidth`, the stream counts against those caps.
kj::Promise<kj::Own<kj::AsyncIoStream>> open_node_stream(kj::AsyncIoProvider& io, const PeerAddress& address,
                                                        std::shared_ptr<Bandwidth> bandwidth = nullptr);

class NodeConnection {
 public:
  // Connects to `address` (its peer id checked when given) and says hello with `required_features`.
  // With `bandwidth` (a node's next hop), the connection counts against the node's caps.
  static kj::Promise<kj::Own<NodeConnection>> connect(kj::AsyncIoProvider& io, TlsContext& tls,
                                                      const PeerAddress& address,
                                                      std::vector<std::string> required_features,
                                                      kj::Duration timeout,
                                                      std::shared_ptr<Bandwidth> bandwidth = nullptr);

  proto::Node::Client& node() { return node_; }
  const NodeDescription& info() const { return info_; }
  const std::string& peer_id() const { return peer_id_; }  // as proven in TLS
  const PeerAddress& address() const { return address_; }
  // Resolves (or breaks) when the connection ends.
  kj::Promise<void> on_disconnect() { return network_->onDisconnect(); }

  NodeConnection(kj::Own<kj::AsyncIoStream> stream, std::string peer_id, PeerAddress address);

 private:
  // Declaration order is teardown order reversed: capabilities go before the RPC system, which
  // goes before the network and stream it uses.
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  proto::Node::Client node_ = nullptr;
  std::string peer_id_;
  PeerAddress address_;
  NodeDescription info_;
};

template <class T>
kj::Promise<T> with_timeout(kj::Timer& timer, kj::Duration timeout, const std::string& what, kj::Promise<T> promise) {
  return promise.exclusiveJoin(timer.afterDelay(timeout).then([what, timeout]() -> kj::Promise<T> {
    throw_rpc_error(ErrorCode::DeadlineExceeded,
                    what + " timed out after " + std::to_string(timeout / kj::SECONDS) + " s");
  }));
}

}  // namespace omni::net
