// RelayServer: makes nodes that cannot accept connections (behind NAT) reachable (`omni relay`).
//
// One TCP port takes three kinds of connection, told apart by their first line (relay_preamble.h):
// a node's control connection (REGISTER: TLS with the node's key, then proto/relay.capnp), a
// client asking for a registered node (CONNECT <peer id>), and a node's dial-back for one client
// (ACCEPT <token>). For a CONNECT the relay calls the node's RelayDialer with a fresh random token,
// waits for the ACCEPT carrying it, answers the client "OK" and splices the two TCP streams
// (relay_splice.h). TLS runs end to end between client and node: the relay holds no key but its
// own (used only on control connections) and sees only ciphertext.
//
// Limits (each refusal is a sentence to the client, "ERR ..."): registered nodes; relayed
// connections per node, per source address (of which waiting for a dial-back: fewer) and in all;
// an unknown peer id; a node that does not dial back in time. Connections still sending their
// first line are capped per source address and in all (beyond: closed at once, unanswered). A
// first line must arrive within the handshake timeout; a relayed client must send its first byte
// (its TLS hello) within the first-byte timeout; a relayed connection idle longer than the idle
// timeout is closed, and so is one whose other side closed 2 s ago (splice linger); a
// registration silent for 3 keepalive periods is dropped. So one address cannot take a node's
// connections, nor hold them by staying silent.
//
// Threads: everything runs on the kj event loop of the thread that calls serve().
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/identity.h"

namespace omni::net {

struct RelayOptions {
  std::string public_address;      // "HOST:PORT" clients reach the relay at; empty: what each node dialed
  uint32_t max_nodes = 256;        // registered at once
  uint32_t max_per_node = 32;      // relayed connections open to one node at once
  uint32_t max_relayed = 4096;     // relayed connections open (or waiting for a dial-back) in all
  uint32_t max_per_source = 16;    // ... from one source address (IP), to all nodes together
  uint32_t max_pending_per_source = 8;  // ... of which waiting for a node's dial-back
  uint32_t max_unidentified = 256; // connections still sending their first line
  uint32_t max_unidentified_per_source = 16;  // ... from one source address
  uint32_t keepalive_s = 15;       // nodes ping this often; silent for 3x this: dropped
  uint32_t handshake_timeout_s = 10;  // first line; TLS of control connections
  uint32_t first_byte_timeout_s = 10;  // from OK until the relayed client's first byte
  uint32_t dial_timeout_s = 5;     // from CONNECT until the node's ACCEPT arrives
  uint32_t idle_timeout_s = 300;   // a relayed connection with no byte either way is closed
  std::function<void(const std::string&)> log;  // one line per registration and relayed connection
};

// Counters since start, for logs and tests.
struct RelayStats {
  uint32_t nodes = 0;              // registered now
  uint32_t active = 0;             // relayed connections open now
  uint64_t relayed = 0;            // relayed connections made (OK sent)
  uint64_t refused = 0;            // CONNECTs answered ERR
  uint64_t bytes_to_nodes = 0;     // of closed and open relayed connections
  uint64_t bytes_from_nodes = 0;
};

class RelayServer {
 public:
  // Errors: options out of range.
  static Result<std::unique_ptr<RelayServer>> create(const RelayOptions& options, Identity identity);
  ~RelayServer();

  // Listens on `listen` ("HOST:PORT", port 0 = any), calls `on_listening("HOST:PORT")` with the
  // bound address, and serves until `stop` resolves, on the calling thread's event loop (`io` from
  // kj::setupAsyncIo on this thread). Errors: the address cannot be bound.
  Result<void> serve(kj::AsyncIoContext& io, const std::string& listen,
                     const std::function<void(const std::string&)>& on_listening, kj::Promise<void> stop);

  const std::string& peer_id() const;
  // Only on the serving thread (e.g. from a promise on its loop), or after serve() returned.
  RelayStats stats() const;

  struct State;  // shared with the RPC objects; defined in relay_server.cpp

 private:
  explicit RelayServer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace omni::net
