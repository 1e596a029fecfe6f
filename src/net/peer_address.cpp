#include "net/peer_address.h"

#include <charconv>

#include "net/peer_id.h"

namespace omni::net {

std::string PeerAddress::dial_host_port() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string PeerAddress::host_port() const {
  return relayed ? std::string(kRelayPrefix) + dial_host_port() : dial_host_port();
}

std::string PeerAddress::to_string() const { return peer_id.empty() ? host_port() : peer_id + "@" + host_port(); }

Result<PeerAddress> parse_listen_address(std::string_view text) {
  PeerAddress a;
  const std::string_view whole = text;
  if (text.substr(0, kRelayPrefix.size()) == kRelayPrefix) {
    a.relayed = true;
    text = text.substr(kRelayPrefix.size());
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size())
    return Error{ErrorCode::InvalidArgument, "address '" + std::string(whole) + "' has no port (write HOST:PORT)"};
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return Error{ErrorCode::InvalidArgument, "address '" + std::string(whole) + "' has no host"};
  // Only a bracketed IPv6 host may hold ':' (so "relay:" cannot hide in a host, nor be repeated).
  if (host.find(':') != std::string_view::npos && text.front() != '[')
    return Error{ErrorCode::InvalidArgument,
                 "address '" + std::string(whole) + "' has ':' in its host (write IPv6 hosts in brackets: [::1]:7000)"};
  std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return Error{ErrorCode::InvalidArgument,
                 "address '" + std::string(whole) + "' has an invalid port '" + std::string(port) + "'"};
  a.host = std::string(host);
  a.port = static_cast<uint16_t>(value);
  return a;
}

Result<PeerAddress> parse_peer_address(std::string_view text) {
  std::string id;
  const std::string_view whole = text;
  if (const auto at = text.find('@'); at != std::string_view::npos) {
    id = std::string(text.substr(0, at));
    if (!is_peer_id(id))
      return Error{ErrorCode::InvalidArgument, "'" + id + "' in '" + std::string(whole) +
                                                   "' is not a peer id (55 base32 characters starting with 'ci')"};
    text = text.substr(at + 1);
  }
  auto a = parse_listen_address(text);
  if (!a) return a.error();
  if (a->port == 0)
    return Error{ErrorCode::InvalidArgument, "address '" + std::string(text) + "' needs a non-zero port"};
  if (a->relayed && id.empty())
    return Error{ErrorCode::InvalidArgument, "relayed address '" + std::string(whole) +
                 "' needs the node's peer id (write ID@relay:HOST:PORT): the relay finds the node by it"};
  a->peer_id = std::move(id);
  return a;
}

Result<std::vector<PeerAddress>> parse_peer_list(std::string_view text) {
  std::vector<PeerAddress> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (!item.empty()) {
      auto a = parse_peer_address(item);
      if (!a) return a.error();
      out.push_back(std::move(*a));
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  if (out.empty()) return Error{ErrorCode::InvalidArgument, "no peer addresses given"};
  return out;
}

}  // namespace omni::net
