#include "net/client_quota.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace omni::net {

struct ClientQuota::Lease::Counts {
  std::map<std::string, uint32_t> by_peer, by_address;
};

namespace {

uint32_t count_of(const std::map<std::string, uint32_t>& counts, const std::string& key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

void decrement(std::map<std::string, uint32_t>& counts, const std::string& key) {
  auto it = counts.find(key);
  if (it == counts.end()) return;
  if (--it->second == 0) counts.erase(it);
}

}  // namespace

std::string address_key(const struct sockaddr* address, socklen_t length) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return text;
  }
  if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      in_addr v4;
      std::memcpy(&v4, v6->sin6_addr.s6_addr + 12, sizeof v4);
      inet_ntop(AF_INET, &v4, text, sizeof text);
      return text;
    }
    in6_addr prefix = v6->sin6_addr;
    std::memset(prefix.s6_addr + 8, 0, 8);
    inet_ntop(AF_INET6, &prefix, text, sizeof text);
    return std::string(text) + "/64";
  }
  return {};
}

ClientQuota::ClientQuota(std::string what, std::string flag, uint32_t limit)
    : what_(std::move(what)), flag_(std::move(flag)), limit_(limit), counts_(std::make_shared<Lease::Counts>()) {}

Result<ClientQuota::Lease> ClientQuota::acquire(const ClientKey& client) {
  if (limit_ > 0) {
    const uint32_t by_peer = count_of(counts_->by_peer, client.peer_id);
    if (by_peer >= limit_)
      return Error{ErrorCode::ResourceExhausted, "too many " + what_ + " for one client: peer " + client.peer_id +
                                                     " holds " + std::to_string(by_peer) + " of the " +
                                                     std::to_string(limit_) + " this node allows per client (" +
                                                     flag_ + "); close one or try another node"};
    const uint32_t by_address = client.address.empty() ? 0 : count_of(counts_->by_address, client.address);
    if (by_address >= limit_)
      return Error{ErrorCode::ResourceExhausted, "too many " + what_ + " for one client: address " + client.address +
                                                     " holds " + std::to_string(by_address) + " of the " +
                                                     std::to_string(limit_) + " this node allows per client (" +
                                                     flag_ + "); close one or try another node"};
  }
  ++counts_->by_peer[client.peer_id];
  if (!client.address.empty()) ++counts_->by_address[client.address];
  return Lease(counts_, client);
}

uint32_t ClientQuota::held_by_peer(const std::string& peer_id) const { return count_of(counts_->by_peer, peer_id); }

uint32_t ClientQuota::held_by_address(const std::string& address) const {
  return count_of(counts_->by_address, address);
}

ClientQuota::Lease::Lease(std::shared_ptr<Counts> counts, ClientKey key)
    : counts_(std::move(counts)), key_(std::move(key)) {}

ClientQuota::Lease& ClientQuota::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    give_back();
    counts_ = std::move(other.counts_);
    key_ = std::move(other.key_);
  }
  return *this;
}

ClientQuota::Lease::~Lease() { give_back(); }

void ClientQuota::Lease::give_back() {
  if (!counts_) return;
  decrement(counts_->by_peer, key_.peer_id);
  if (!key_.address.empty()) decrement(counts_->by_address, key_.address);
  counts_.reset();
}

}  // namespace omni::net
