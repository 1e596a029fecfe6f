// RelayClient: the node side of a relay (`omni node --relay HOST:PORT`), for a node that cannot
// accept connections itself (behind NAT).
//
// Keeps one outbound control connection to the relay (preamble REGISTER, TLS with the node's own
// key, proto/relay.capnp), pings it as the relay's terms ask, and when it breaks reconnects with
// exponential backoff (0.5 s doubling to 10 s, ±20 % jitter; back to 0.5 s after a registration).
// For each client the relay announces, it opens a fresh connection to the relay (preamble ACCEPT
// with the relay's token) and splices it to the node's own listener (`local`, e.g. a loopback
// port that NodeServer serves), so the node serves relayed clients exactly as direct ones: TLS and
// --allow-peers see the client's own key.
//
// Runs on the event loop of the thread that calls run(); the RelayClient must outlive the promise.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "net/peer_address.h"
#include "net/tls.h"

namespace omni::net {

struct RelayClientOptions {
  PeerAddress relay;             // [ID@]HOST:PORT of the relay; with ID the relay must present it
  std::string local;             // HOST:PORT of this node's own listener
  uint32_t max_connections = 64; // relayed connections this node serves at once; more are refused
  uint32_t connect_timeout_s = 10;
  std::function<void(const std::string&)> log;  // lost / refused / reconnecting lines
  // After each (re)registration: the node's relayed address "<peer id>@relay:HOST:PORT".
  std::function<void(const std::string&)> on_registered;
};

class RelayClient {
 public:
  RelayClient(kj::AsyncIoProvider& io, std::shared_ptr<TlsContext> tls, RelayClientOptions options);
  ~RelayClient();
  RelayClient(const RelayClient&) = delete;
  RelayClient& operator=(const RelayClient&) = delete;

  // Registers and stays registered, reconnecting after every failure; never resolves.
  kj::Promise<void> run();

  uint32_t active() const;             // relayed connections open now
  uint64_t registrations() const;      // successful registrations so far

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace omni::net
