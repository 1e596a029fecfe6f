// StallWatch: notices a node of a pipeline's chain that is alive but stopped answering (a frozen
// process or host, a link that drops everything) while a call waits on it, long before the call
// timeout, and makes that call fail at once so the failover can route around the node.
//
// The rule (docs/design.md, "Swarm"): once a call, or the opening of the pipeline, has been
// outstanding for one heartbeat interval, every node of the chain gets a cheap info() call each
// interval, on a connection of the watch's own. A node that answers none of them for `stall_ms`
// since the call began is stalled. Nodes answer info() on their event loop, which never runs a
// forward pass (net/node_server.h), so a node that is merely slow (a long prompt, a busy CPU)
// still answers within a round trip and is never declared stalled; slow compute stays bounded
// only by the call timeout.
//
// Failing the call: the Pipeline API cannot cancel a call, which blocks its thread inside the
// pipeline's own event loop. So on a stall the watch shuts down (shutdown(2), not close: the fds
// stay the pipeline's) every TCP socket of this process that was opened after the watch started
// and leads to an address of the chain. The waiting call then fails as a lost connection, the
// path a dead node takes anyway. The pipeline is useless afterwards: drop it. Start the watch
// right before opening the pipeline it watches. Linux only (/proc/self/fd).
//
// Threads: each watch runs one thread with its own kj event loop; begin_call, end_call and
// stalled may be called from any thread. Destroying the watch stops and joins its thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/identity.h"
#include "net/peer_address.h"

namespace omni::swarm {

struct StallOptions {
  uint32_t stall_ms = 3000;       // silence that makes a node stalled
  uint32_t interval_ms = 0;       // between heartbeats; 0: stall_ms / 4
  uint32_t connect_timeout_ms = 0;  // of the watch's own connections; 0: stall_ms
};

class StallWatch {
 public:
  // Called once, on the watch's thread, when a node stalls: the node and a sentence saying so. It
  // returns before the connections are cut, so the failing call sees its effects.
  using OnStall = std::function<void(const net::PeerAddress& node, const std::string& reason)>;

  // Watches `nodes` (peer ids given). Errors: an address that does not resolve, TLS setup.
  static Result<std::unique_ptr<StallWatch>> start(const std::vector<net::PeerAddress>& nodes,
                                                   const net::Identity& identity, const StallOptions& options,
                                                   OnStall on_stall);
  ~StallWatch();
  StallWatch(const StallWatch&) = delete;
  StallWatch& operator=(const StallWatch&) = delete;

  // Brackets a call (or the opening) on the watched pipeline; heartbeats run only in between.
  void begin_call();
  void end_call();
  // Set once a node stalled (and the connections were cut): why, naming the node.
  std::optional<std::string> stalled() const;

  struct Impl;

 private:
  explicit StallWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni::swarm
