// PeerAddress: where a node is and, optionally, which key it must hold.
//
// Written "ID@HOST:PORT" (the node must present peer id ID, else the connection is refused),
// "HOST:PORT" (trust on first use: accept whatever id the node presents and report it), or
// "ID@relay:HOST:PORT" (the node is reached through the relay at HOST:PORT, docs/protocol.md
// "Relay"; the id is required there: the relay finds the node by it, and TLS end to end proves it).
// HOST is a name, an IPv4 address or a bracketed IPv6 address ("[::1]:7000").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni::net {

inline constexpr std::string_view kRelayPrefix = "relay:";

struct PeerAddress {
  std::string peer_id;  // empty: trust on first use (never for a relayed address)
  std::string host;     // the node's, or its relay's when relayed
  uint16_t port = 0;
  bool relayed = false;

  // The location without the id: "host:port", or "relay:host:port" when relayed. This is what a
  // chain's hop address carries on the wire, and what messages name.
  std::string host_port() const;
  // "host:port" of the TCP connection to open: the node's, or its relay's.
  std::string dial_host_port() const;
  std::string to_string() const;  // the form parse_peer_address() reads back
};

// Errors name the text and what is wrong with it (missing port, bad id, relay without id, ...).
Result<PeerAddress> parse_peer_address(std::string_view text);
// A comma-separated list of addresses.
Result<std::vector<PeerAddress>> parse_peer_list(std::string_view text);
// "HOST:PORT" to listen on (port 0: any free port). Also reads "relay:HOST:PORT" (relayed set),
// the location part of a hop address; listeners refuse that form.
Result<PeerAddress> parse_listen_address(std::string_view text);

}  // namespace omni::net
