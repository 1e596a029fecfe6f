// Spot checks (docs/design.md, "Verified computation"): a check re-runs a session's calls so far,
// hop by hop of the route the session uses, on direct sessions of the route's node for that hop
// and of a second replica serving the same blocks (both at once), and compares their signed
// outputs bit for bit (honest nodes return the same bits on any CPU). On a mismatch a third replica
// decides; the outvoted node gets a FaultReport (its signed calls and the winner's signed answer),
// and the next hop runs on the majority's output. The agreed output of the last hop's last call is
// what the session's last call should have returned.
//
// A check replays the whole session with the bits the route computed: its prompt batches as they
// were made and its one-token calls as per-token calls (ForwardInput.perTokenSums: each row the bits
// of a one-token call, a trip per up to max_batch rows), so the agreed output of the last call is
// what the route's must be at any point of the session. It costs the session so far once on two
// nodes per hop: cheap for the first calls of a session, as much as the session for one late in
// it. Both nodes of a hop run at the same time.
//
// A node that fails mid-check loses its kept connection; the next check connects afresh.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/hidden_codec.h"
#include "net/identity.h"
#include "net/node_info.h"
#include "net/peer_address.h"
#include "swarm/fault_report.h"

namespace omni::swarm {

struct Replica {
  net::PeerAddress address;  // with its peer id
  uint32_t block_begin = 0, block_end = 0;  // what it serves
};

struct CheckHop {
  Replica node;  // the route's node
  uint32_t block_begin = 0, block_end = 0;  // the hop's range in the route
};

struct SpotCheckOptions {
  net::HiddenEncoding encoding = net::HiddenEncoding::F16;  // as the session's
  net::ModelIdentity model;
  uint32_t connect_timeout_s = 10;
  uint32_t call_timeout_s = 60;
  uint32_t max_batch = 512;  // rows a call may carry (the route's nodes take as many)
};

struct SpotCheckResult {
  std::vector<std::string> agreed;      // peer ids whose outputs a second node matched bit for bit
  std::vector<FaultReport> faults;      // outvoted nodes
  std::vector<std::string> unresolved;  // hops where no majority could be formed (why, one each)
  std::vector<uint8_t> last_row;        // the agreed output of the last call's last row (encoding); empty
                                        // when a hop stayed unresolved
  bool own_batches = false;  // the nodes' caches hold the route's bits, so last_row has the bits the
                             // route's result must have (false when a call over max_batch was cut)
};

// Runs checks on a thread of its own (a kj event loop per thread: the caller's pipeline holds the
// caller's), keeping its connections to the nodes between checks. One check at a time.
class SpotChecker {
 public:
  SpotChecker(net::Identity identity, SpotCheckOptions options);
  ~SpotChecker();
  SpotChecker(const SpotChecker&) = delete;
  SpotChecker& operator=(const SpotChecker&) = delete;

  // Checks the session whose calls so far are `history` (in order; the last one is the call
  // checked) along `route`, taking second and third replicas from `replicas` (nodes serving the
  // model, other than the hop's own; ones whose range does not hold the hop's are skipped), in the
  // order given. Errors: a route or call list
  // that is empty; failures of single nodes are not errors (the hop is resolved with the others, or
  // reported unresolved).
  Result<SpotCheckResult> check(const std::vector<CheckHop>& route, const std::vector<Replica>& replicas,
                                const std::vector<std::vector<int32_t>>& history);
  // Starts connecting to `nodes` in the background (the first check then need not wait for the
  // handshakes); a node that cannot be reached is met again by the check.
  void connect(std::vector<Replica> nodes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni::swarm
