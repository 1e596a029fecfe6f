#include "net/peer_address.h"

#include "base/parse.h"
#include "net/peer_id.h"

namespace omni::net {

std::string PeerAddress::dial_host_port() const { return HostPort{host, port}.to_string(); }

std::string PeerAddress::host_port() const {
  return relayed ? std::string(kRelayPrefix) + dial_host_port() : dial_host_port();
}

std::string PeerAddress::to_string() const { return peer_id.empty() ? host_port() : peer_id + "@" + host_port(); }

Result<PeerAddress> parse_listen_address(std::string_view text) {
  PeerAddress a;
  if (text.substr(0, kRelayPrefix.size()) == kRelayPrefix) {
    a.relayed = true;
    text = text.substr(kRelayPrefix.size());
  }
  auto location = parse_host_port(text);
  if (!location) return location.error().with_context("address");
  a.host = std::move(location->host);
  a.port = location->port;
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
