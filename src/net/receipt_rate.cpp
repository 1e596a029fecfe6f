#include "net/receipt_rate.h"

namespace omni::net {

Result<void> ReceiptRate::take(const ClientKey& client, uint32_t n, uint64_t now_s) {
  if (now_s / 60 != window_) {
    window_ = now_s / 60;
    by_peer_.clear();
    by_address_.clear();
  }
  auto refuse = [&](const std::string& key, uint32_t held) {
    return Error{ErrorCode::ResourceExhausted, "too many work receipts from " + key + ": " + std::to_string(held) +
                                                   " this minute and " + std::to_string(n) + " more, over the " +
                                                   std::to_string(per_minute_) +
                                                   " this node takes per client (--max-receipts-per-minute)"};
  };
  const uint32_t peer = by_peer_.count(client.peer_id) ? by_peer_[client.peer_id] : 0;
  if (peer + uint64_t{n} > per_minute_) return refuse("peer " + client.peer_id, peer);
  uint32_t address = 0;
  if (!client.address.empty()) {
    address = by_address_.count(client.address) ? by_address_[client.address] : 0;
    if (address + uint64_t{n} > per_minute_) return refuse(client.address, address);
    by_address_[client.address] = address + n;
  }
  by_peer_[client.peer_id] = peer + n;
  return {};
}

}  // namespace omni::net
