#include "net/connection_limits.h"

#include "net/client_quota.h"

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
  std::string key = address_key(address, length);  // the per-client quotas count by the same key
  return key.empty() ? "other" : key;
}

}  // namespace omni::net
