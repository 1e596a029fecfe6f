// Fair use: what a request's class is, from whose it is and what that node contributed
// (docs/design.md, "Fair use").
//
// A request is a node's when it presents a key bound to that node (access_policy.h, KEY=NODEID).
// The node's contribution is the work this gateway's own sessions received from it
// (contribution_ledger.h). A node that contributed (work > 0) gets the priority class (the
// scheduler admits it first without starving the free tier: scheduler.h) and its rate limits
// scaled by 1 + work / work_unit, at most max_scale; its requests share one bucket ("node:ID"),
// whatever address they come from. Everyone else (anonymous, or a node that contributed nothing)
// is the free tier: the configured limits, per client address.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace omni::gateway {

struct FairUseOptions {
  uint64_t work_unit = 100000;  // tokens × blocks that earn one more time the free tier's limits
  double max_scale = 10;        // the most a contribution multiplies the limits by
};

struct ClientClass {
  std::string rate_key;   // the rate limiter's client: "node:ID" for a contributor, else the address
  std::string node_id;    // the node whose key the request presented; empty: anonymous
  bool priority = false;  // a contributor
  double limit_scale = 1; // the rate limits' multiplier
};

// `node_id` as the access policy decided (empty: anonymous); `work` the ledger's figure for it.
ClientClass classify(std::string_view remote_addr, std::string_view node_id, uint64_t work,
                     const FairUseOptions& options);

}  // namespace omni::gateway
