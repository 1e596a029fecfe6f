// ReceiptRate: how many work receipts one client may hand a node per minute, so that what a client
// makes the node store (credit_ledger.h) grows at a bounded rate. Counted like ClientQuota: by the
// peer id the connection proved and, separately, by its source address (fresh peer ids cost
// nothing; addresses do), in fixed one-minute windows. Both must be under the limit.
//
// Memory: one entry per key seen in the current window (the node's connection limits bound how
// many connect in a minute); a new window forgets the old one. Not thread-safe (event loop thread).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/result.h"
#include "net/client_quota.h"

namespace omni::net {

class ReceiptRate {
 public:
  explicit ReceiptRate(uint32_t per_minute) : per_minute_(per_minute) {}
  // Takes `n` receipts for `client` at `now_s` (any monotonic seconds), or ResourceExhausted naming
  // the key at its limit and --max-receipts-per-minute (nothing taken then).
  Result<void> take(const ClientKey& client, uint32_t n, uint64_t now_s);

 private:
  uint32_t per_minute_;
  uint64_t window_ = 0;  // now_s / 60 of the counts held
  std::map<std::string, uint32_t> by_peer_, by_address_;
};

}  // namespace omni::net
