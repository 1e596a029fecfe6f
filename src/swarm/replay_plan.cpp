#include "swarm/replay_plan.h"

#include <algorithm>
#include <iterator>

namespace omni::swarm {

std::vector<ReplayCall> plan_replay(const std::vector<KeptCall>& calls, size_t limit, bool* cut) {
  limit = std::max<size_t>(limit, 1);
  if (cut) *cut = false;
  std::vector<ReplayCall> out;
  ReplayCall steps{{}, true};
  const auto flush = [&] {
    if (!steps.tokens.empty()) out.push_back(std::move(steps));
    steps = ReplayCall{{}, true};
  };
  for (const KeptCall& call : calls) {
    if (call.per_token_rows || call.tokens.size() == 1) {
      for (int32_t t : call.tokens) {
        steps.tokens.push_back(t);
        if (steps.tokens.size() == limit) flush();
      }
      continue;
    }
    flush();
    if (cut && call.tokens.size() > limit) *cut = true;
    for (size_t at = 0; at < call.tokens.size(); at += limit) {
      const auto first = call.tokens.begin() + static_cast<std::ptrdiff_t>(at);
      out.push_back({std::vector<int32_t>(first, first + static_cast<std::ptrdiff_t>(std::min(limit, call.tokens.size() - at))),
                     false});
    }
  }
  flush();
  return out;
}

}  // namespace omni::swarm
