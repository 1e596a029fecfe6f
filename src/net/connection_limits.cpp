#include "net/connection_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace omni::net {

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    release();
    counts_ = std::move(other.counts_);
    source_ = std::move(other.source_);
  }
  return *this;
}

ConnectionLimits::Slot::~Slot() { release(); }

void ConnectionLimits::Slot::release() {
  if (!counts_) return;
  counts_->total--;
  auto it = counts_->per_source.find(source_);
  if (it != counts_->per_source.end() && --it->second == 0) counts_->per_source.erase(it);
  counts_.reset();
}

Result<ConnectionLimits::Slot> ConnectionLimits::admit(const std::string& source) {
  if (counts_->total >= max_total_)
    return Error{ErrorCode::ResourceExhausted, "the node holds " + std::to_string(counts_->total) +
                                                   " connections, its limit; try again later or another node"};
  uint32_t& mine = counts_->per_source[source];
  if (mine >= max_per_source_) {
    if (mine == 0) counts_->per_source.erase(source);
    return Error{ErrorCode::ResourceExhausted, "the node holds " + std::to_string(mine) +
                                                   " connections from your address, its limit per address; close "
                                                   "some first"};
  }
  mine++;
  counts_->total++;
  return Slot(counts_, source);
}

uint32_t ConnectionLimits::from(const std::string& source) const {
  auto it = counts_->per_source.find(source);
  return it == counts_->per_source.end() ? 0 : it->second;
}

std::string source_key(const sockaddr* address, socklen_t length) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    in_addr a;
    std::memcpy(&a, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, sizeof a);
    return inet_ntop(AF_INET, &a, text, sizeof text) ? text : "other";
  }
  if (address->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    in6_addr a;
    std::memcpy(&a, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, sizeof a);
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      in_addr v4;
      std::memcpy(&v4, a.s6_addr + 12, 4);
      return inet_ntop(AF_INET, &v4, text, sizeof text) ? text : "other";
    }
    std::memset(a.s6_addr + 8, 0, 8);  // the /64
    return inet_ntop(AF_INET6, &a, text, sizeof text) ? std::string(text) + "/64" : "other";
  }
  return "other";
}

}  // namespace omni::net
