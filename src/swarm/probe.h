// Probing nodes: connect to each (TLS, peer id checked, hello), ask for its info once more and time
// that call, so the router gets a round-trip time and a node's live state (sessions in use), and
// dead nodes are found before a route goes through them.
//
// A stalled node (alive, not answering) holds a probe until its timeout; a caller that only needs
// some answers (enough to cover a model) can stop early with `enough`.
//
// Threads: runs its own kj event loop on the calling thread, so it must not be called while that
// thread has another one (e.g. while a remote pipeline from src/net lives on it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/identity.h"
#include "net/node_info.h"
#include "net/peer_address.h"
#include "swarm/record.h"
#include "swarm/reputation.h"

namespace omni::swarm {

struct ProbeResult {
  bool ok = false;
  double rtt_s = 0;            // one info() round trip on the open connection
  net::NodeDescription info;   // as the node reports it now
  std::string error;           // when !ok: why (refused, timed out, wrong id, ...)
  bool cut_short = false;      // !ok because probing stopped early (`enough`), not because it failed
};

// Probes all `peers` at once; one result per peer, in order. Never throws. With `enough`: it is
// asked after each probe ends (with the results so far); once it says yes, probing stops
// `grace_ms` later and the probes still running are cut short.
std::vector<ProbeResult> probe_nodes(const std::vector<net::PeerAddress>& peers, const net::Identity& identity,
                                     uint32_t timeout_ms,
                                     const std::function<bool(const std::vector<ProbeResult>&)>& enough = {},
                                     uint32_t grace_ms = 0);

// Which records to believe about coverage (a joining node's choice, settling, rebalancing): a record
// counts only when its node answered a probe at the record's first address with the same model
// identity, and it counts for the blocks the node answered with (the answer wins over the record:
// a node that just moved serves other blocks than its last record says). A record for a dead
// address or a node serving another model is left out, and that is remembered for failed_ttl (for
// that record: a newer record of the node is probed afresh) so it is not probed again on every read. A node that answered is probed again at the next read (ok_ttl
// 0): the blocks it serves change when it moves, before its new record shows.
// A node whose --allow-peers list refuses this prober's peer id does not answer, so it is not counted.
// Each probe made is an uptime event for the peer in `reputation` (when given): answered with the
// model, or not.
// One thread at a time (it probes on the calling thread: see probe_nodes()).
class RecordProber {
 public:
  struct Options {
    uint32_t timeout_ms = 2000;
    std::chrono::milliseconds ok_ttl{0};
    std::chrono::milliseconds failed_ttl{30000};
    std::shared_ptr<ReputationStore> reputation;  // null: none kept
  };
  RecordProber(net::Identity identity, net::ModelIdentity model, Options options);
  // The records of `records` whose nodes answered (probing those not known yet, all at once), in
  // order, with the blocks they answered with. `why` (optional) gets one line per record left out.
  std::vector<NodeRecord> answering(const std::vector<NodeRecord>& records, std::vector<std::string>* why = nullptr);

 private:
  struct Verdict {
    bool ok = false;
    uint32_t block_begin = 0, block_end = 0;  // as the node answered
    std::string error;
    std::chrono::steady_clock::time_point until;
  };
  net::Identity identity_;
  net::ModelIdentity model_;
  Options options_;
  std::map<std::string, Verdict> verdicts_;  // by "peer@address#seq"
};

}  // namespace omni::swarm
