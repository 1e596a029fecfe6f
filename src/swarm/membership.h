// A node's membership in the swarm (`omni node --bootstrap ...`): joins the DHT, picks its blocks
// when none are given (memory planner + assignment.h), measures its throughput, and once the node
// listens keeps its signed record in the directory (Announcer), and its provider record when it
// serves a model's shards (provide()). A node that picked its blocks may also re-check the swarm's
// coverage now and then and decide to move (start_rebalancing); the node itself carries a move out
// (it reloads its blocks) and reports it with moved(). Once it announces, it also measures its round
// trips to its neighbours in route order (link_meter.h) and publishes them in its record.
//
// Also `omni node --bootstrap-only`: a DHT node that only helps others find each other.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "swarm/assignment.h"
#include "swarm/dht_directory.h"
#include "swarm/node_profile.h"
#include "swarm/probe.h"
#include "swarm/reputation.h"
#include "swarm/provider_record.h"

namespace omni::swarm {

struct JoinOptions {
  std::vector<std::string> bootstrap;  // DHT nodes "HOST:PORT"
  uint16_t dht_port = 0;
  std::string dht_host;                // address the DHT's UDP socket binds (its family only); empty: all
  bool lan = false;
  bool bootstrap_only = false;
  uint32_t max_blocks = 0;             // 0: as many as memory allows
  uint64_t max_memory_mib = 0;         // 0: MemAvailable
  uint32_t announce_interval_s = 10;
  uint32_t record_ttl_s = 30;
  uint32_t rebalance_interval_s = 60;  // a node that chose its blocks re-checks them this often (+-25 %); 0: never
  double rebalance_factor = 1.25;      // move when the weakest block gains more than this factor (assignment.h)
  std::string announce_host;           // host clients reach; default: the listen host (127.0.0.1 for 0.0.0.0)
  // Joining without --blocks (see start_rebalancing): a random wait of up to join_jitter_ms before
  // the directory is read, then up to settle_rounds re-reads, settle_interval_ms apart (+-25 %).
  uint32_t join_jitter_ms = 1500;
  uint32_t settle_interval_ms = 700;
  uint32_t settle_rounds = 12;
  uint32_t probe_timeout_ms = 2000;    // for the probes that vet other nodes' records
  // This node's view of its peers (reputation.h): fed by those probes, weighs the others' records
  // when choosing or rebalancing blocks (weigh_by_reputation). Null: every peer counts fully.
  std::shared_ptr<ReputationStore> reputation;

  bool joins() const { return !bootstrap.empty() || lan; }
};

class Membership {
 public:
  // Joins the DHT and settles the blocks: `blocks` "A:B" as given, or chosen when empty (after a
  // random wait of up to join_jitter_ms, over the coverage of the nodes that answer a probe: see
  // RecordProber). `log` gets progress lines. Errors: DHT start, model load, memory refusal,
  // directory lookup. `identity` is the node's own (its records are signed with it).
  static Result<std::unique_ptr<Membership>> join(const JoinOptions& options, const std::string& model_path,
                                                  const net::ModelIdentity& model_identity,
                                                  const std::string& blocks, uint64_t kv_bytes, int threads,
                                                  const net::Identity& identity,
                                                  std::function<void(const std::string&)> log);
  // The same through a DHT node started already (start_directory) with a model loaded already,
  // announced as `model_identity`. A model that holds only some blocks (from a model CID's shards)
  // needs `blocks`, within what it holds: choosing blocks needs the whole model's footprint.
  static Result<std::unique_ptr<Membership>> join(const JoinOptions& options, std::unique_ptr<DhtDirectory> directory,
                                                  const model::Model& model, const net::ModelIdentity& model_identity,
                                                  const std::string& blocks, uint64_t kv_bytes, int threads,
                                                  const net::Identity& identity,
                                                  std::function<void(const std::string&)> log);
  // The DHT node join() uses, started on its own: a node started from a model CID finds the
  // providers of its shards through it before it can load the model.
  static Result<std::unique_ptr<DhtDirectory>> start_directory(const JoinOptions& options);
  ~Membership();

  uint32_t block_begin() const;
  uint32_t block_end() const;
  // Whether join() chose the blocks (no --blocks): only then may the node move.
  bool chose_blocks() const { return chose_blocks_; }
  // Publishes the record with these addresses, first preferred ("host:port", or "relay:host:port"
  // for a node reached through a relay), and starts refreshing it. Called again (a relay's address
  // changed), the new record replaces the old one at once (a higher sequence number). Blocks for
  // the first DHT put. The first call also starts measuring links: a thread of its own reads the
  // model's records and probes the neighbours 1 s after, 4 s after, then every
  // announce_interval_s (+-25 %); figures that changed much (links_changed) are announced at once,
  // the others with the next refresh.
  Result<void> announce_addresses(std::vector<std::string> addresses, uint32_t max_sessions);
  // Also announce, with the same addresses and refreshed like the node record, that this node
  // serves blobs of model `model_cid`: the manifest and the shards marked in `shards`
  // (provider_record.h). Takes effect from the next announce_addresses().
  void provide(const std::string& model_cid, std::vector<bool> shards);
  // Where clients reach a node bound to `listen_address`: --announce-host's host if given, else the
  // listen host (127.0.0.1 for a wildcard host).
  std::string reachable_address(const std::string& listen_address) const;

  // Only when chose_blocks(): a thread of its own first settles the join. Nodes that joined at about
  // the same time may have chosen the same blocks; every settle_interval_ms it re-reads the records,
  // keeps those whose nodes answer a probe, and applies settle_span() (assignment.h: a deterministic
  // tie-break by join priority), offering a move as pending_move() when this node should fill a gap
  // instead, for settle_rounds rounds (about 8 s by default).
  // Then rebalancing (options.rebalance_interval_s > 0): it reads the model's records every interval (jittered by +-25 %, so nodes do not check in
  // step), keeping each peer's newest record until it expires (a DHT read often misses some), and
  // applies consider_move() (assignment.h) with this node's current record and the records of the
  // nodes that answer a probe. A decision to move is
  // checked again after a random 10-60 % of the interval (another node may have moved meanwhile:
  // its new record then shows), and only then offered as pending_move(). The node carries it out
  // when it has no session open (or gives up with cancel_move()), then calls moved().
  void start_rebalancing();
  std::optional<Span> pending_move() const;
  // The node serves `to` now: the record says so from the next announce_addresses() on, which the
  // node calls once it listens again.
  void moved(Span to);
  void cancel_move(const std::string& why);

 private:
  Membership() = default;
  void rebalance_loop();
  void settle(std::map<std::string, NodeRecord>& seen);
  // This node's record, and the other nodes' newest records that answer a probe (read anew).
  std::vector<NodeRecord> answering_others(std::map<std::string, NodeRecord>& seen, NodeRecord& self);
  // The records weighed by this node's reputation of their peers (options_.reputation).
  std::vector<NodeRecord> weighed(const std::vector<NodeRecord>& records) const;
  Move check_move(std::map<std::string, NodeRecord>& seen);
  void link_loop();
  // Sleeps up to `ms` unless the membership ends; false when it ends.
  bool sleep_ms(uint32_t ms);

  JoinOptions options_;
  std::unique_ptr<DhtDirectory> directory_;
  std::unique_ptr<net::Identity> identity_;
  std::unique_ptr<RecordProber> prober_;  // only the joining thread, then the rebalancing thread
  mutable std::mutex mutex_;  // record_, pending_, stopping_ (the rebalancing thread reads them)
  NodeRecord record_;
  bool chose_blocks_ = false;
  std::function<void(const std::string&)> log_;
  std::vector<LinkRtt> links_;  // under mutex_: the last measurement, in every record published
  std::mutex announcer_mutex_;  // announcer_ and link_meter_ (the link thread pokes the announcer)
  std::unique_ptr<Announcer> announcer_;
  std::optional<ProviderRecord> provided_;
  std::unique_ptr<Announcer> provider_announcer_;
  std::optional<Span> pending_;
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread rebalancer_;
  std::thread link_meter_;
};

// Runs a bootstrap-only DHT node on `listen` ("HOST:PORT", UDP) until the process is killed. Prints
// "omni node: bootstrap DHT node listening on udp HOST:PORT". Returns an exit code.
int run_bootstrap_node(const std::string& listen, const JoinOptions& options);

}  // namespace omni::swarm
