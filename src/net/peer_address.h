// PeerAddress: where a node is and, optionally, which key it must hold.
//
// Written "ID@HOST:PORT" (the node must present peer id ID, else the connection is refused) or
// "HOST:PORT" (trust on first use: accept whatever id the node presents and report it). HOST is a
// name, an IPv4 address or a bracketed IPv6 address ("[::1]:7000").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni::net {

struct PeerAddress {
  std::string peer_id;  // empty: trust on first use
  std::string host;
  uint16_t port = 0;

  std::string host_port() const;  // "host:port" (brackets kept for IPv6)
  std::string to_string() const;  // the form parse() reads back
};

// Errors name the text and what is wrong with it (missing port, bad id, ...).
Result<PeerAddress> parse_peer_address(std::string_view text);
// A comma-separated list of addresses.
Result<std::vector<PeerAddress>> parse_peer_list(std::string_view text);
// "HOST:PORT" to listen on (port 0: any free port).
Result<PeerAddress> parse_listen_address(std::string_view text);

}  // namespace omni::net
