// How a session's calls are sent again to rebuild its KV caches with the bits they had (failover's
// replay on a new route, a spot check's replay on other replicas): calls whose rows each carry a
// one-token call's bits (one-token calls, and calls whose rows were summed per token) go together,
// in order, as per-token calls (ForwardInput.perTokenSums) of up to `limit` rows; any other call (a
// prompt batch) goes as it was made, cut into pieces of `limit` rows when larger (its bits are then
// not guaranteed: `cut` is set).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace omni::swarm {

struct KeptCall {
  std::vector<int32_t> tokens;
  bool per_token_rows = false;  // each row has a one-token call's bits (true for one-token calls too)
};

struct ReplayCall {
  std::vector<int32_t> tokens;
  bool per_token = false;  // send with per-token sums
};

std::vector<ReplayCall> plan_replay(const std::vector<KeptCall>& calls, size_t limit, bool* cut = nullptr);

}  // namespace omni::swarm
