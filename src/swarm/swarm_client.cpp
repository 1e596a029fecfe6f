#include "swarm/swarm_client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <set>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "net/node_info.h"
#include "swarm/failover.h"
#include "swarm/fault_report.h"
#include "swarm/spot_check.h"
#include "swarm/stall_watch.h"
#include "swarm/probe.h"
#include "swarm/routing.h"

namespace omni::swarm {
namespace {

using Clock = std::chrono::steady_clock;

bool covers(const std::vector<std::pair<uint32_t, uint32_t>>& ranges, uint32_t n_layer) {
  std::vector<bool> covered(n_layer, false);
  for (const auto& [b, e] : ranges)
    for (uint32_t i = b; i < e && i < n_layer; ++i) covered[i] = true;
  return std::all_of(covered.begin(), covered.end(), [](bool c) { return c; });
}

// Addresses ("peer@host:port") that failed lately, with when they may be tried again. Keyed by
// address, not peer: a node restarted on another port is a fresh start. Shared with the stall
// watches' threads.
class Quarantine {
 public:
  void add(const std::string& key, uint32_t seconds) {
    std::lock_guard lock(mutex_);
    until_[key] = Clock::now() + std::chrono::seconds(seconds);
  }
  bool holds(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = until_.find(key);
    return it != until_.end() && Clock::now() < it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Clock::time_point> until_;
};

// What spot checks share with the openings: the nodes excluded for wrong results (never routed
// through again), how often each node was matched by a second replica, and the route the session
// runs on now with the nodes that could check it. Used on the client's thread only.
struct Verification {
  std::map<std::string, std::string> excluded;  // peer id -> why
  std::map<std::string, uint32_t> matched;      // peer id -> checks it passed
  std::shared_ptr<ReputationStore> reputation;  // told of every check's outcome (persists exclusions)
  std::vector<CheckHop> route;
  std::vector<Replica> replicas;
};

// The records of the model, read once (waiting for a cover) and then again every refresh_ms on a
// thread of its own, so that a failover routes on a recent picture without waiting for the DHT.
class RecordKeeper {
 public:
  RecordKeeper(Directory& directory, std::string model_id, uint32_t n_layer, uint32_t refresh_ms)
      : directory_(directory), model_id_(std::move(model_id)), n_layer_(n_layer), refresh_ms_(refresh_ms) {}
  ~RecordKeeper() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // The first read, waiting up to wait_ms for the records to cover the model; then the refreshes.
  Result<void> start(uint32_t wait_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    for (;;) {
      auto r = read_now();
      if (!r) return r;
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      for (const auto& rec : snapshot()) ranges.emplace_back(rec.block_begin, rec.block_end);
      if (covers(ranges, n_layer_) || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    if (refresh_ms_ > 0) thread_ = std::thread([this] { loop(); });
    return {};
  }

  // Reads the directory now. A record missing from this read stays until it expires: with nodes
  // coming and going, a DHT read often returns only part of what is stored.
  Result<void> read_now() {
    auto found = lookup(directory_, model_id_);
    if (!found) return found.error();
    std::lock_guard lock(mutex_);
    keep_newest(records_, std::move(found->records));
    read_at_ = Clock::now();
    return {};
  }

  std::vector<NodeRecord> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<NodeRecord> out;
    const int64_t now = unix_now_ms();
    for (const auto& [peer, r] : records_)
      if (r.expires_ms > now) out.push_back(r);
    return out;
  }
  double age_s() const {
    std::lock_guard lock(mutex_);
    return std::chrono::duration<double>(Clock::now() - read_at_).count();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(refresh_ms_), [this] { return stopping_; })) {
      lock.unlock();
      (void)read_now();  // a failed read keeps the last records; the next one may succeed
      lock.lock();
    }
  }

  Directory& directory_;
  const std::string model_id_;
  const uint32_t n_layer_;
  const uint32_t refresh_ms_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, NodeRecord> records_;  // by peer id: the newest seen, until it expires
  Clock::time_point read_at_;
  std::thread thread_;
};

// Runs the inner pipeline's calls under a stall watch (when there is one); once the watch has cut
// the connections, every call fails with its reason. When it goes, tells the reputation store how
// its nodes did: a session served by each, unless a call failed, and their speed against `claims`;
// and on_work what each node computed for it.
class WatchedPipeline final : public net::Pipeline {
 public:
  WatchedPipeline(std::unique_ptr<net::Pipeline> inner, std::unique_ptr<StallWatch> watch,
                  std::shared_ptr<ReputationStore> reputation, std::map<std::string, double> claims,
                  std::function<void(const std::string&, uint64_t)> on_work)
      : reputation_(std::move(reputation)), claims_(std::move(claims)), on_work_(std::move(on_work)),
        inner_(std::move(inner)), watch_(std::move(watch)) {}
  ~WatchedPipeline() override {
    const int64_t now = unix_now_s();
    for (const auto& hop : inner_->hop_reports()) {
      if (on_work_ && hop.work > 0) on_work_(hop.peer_id, hop.work);
      auto claim = claims_.find(hop.peer_id);
      if (claim != claims_.end() && hop.median_ms > 0)
        (void)reputation_->record_speed(hop.peer_id, (hop.block_end - hop.block_begin) * 1000.0 / hop.median_ms,
                                        claim->second, now);
    }
    if (calls_ > 0 && !failed_)
      for (const auto& [peer, claim] : claims_) (void)reputation_->record(peer, PeerEvent::Served, now);
  }
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return watched([&] { return inner_->forward(tokens, logits); });
  }
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return watched([&] { return inner_->forward_all(tokens, logits); });
  }
  Result<void> replay_steps(std::span<const int32_t> tokens) override {
    return watched([&] { return inner_->replay_steps(tokens); });
  }
  Result<void> rollback(uint32_t n) override { return inner_->rollback(n); }
  size_t max_batch() const override { return inner_->max_batch(); }
  std::string summary() const override { return inner_->summary(); }
  std::vector<HopReport> hop_reports() const override { return inner_->hop_reports(); }

 private:
  template <class Call>
  Result<void> watched(Call&& call) {
    calls_++;
    auto r = watched_call(std::forward<Call>(call));
    failed_ = failed_ || !r.ok();
    return r;
  }
  template <class Call>
  Result<void> watched_call(Call&& call) {
    if (!watch_) return call();
    if (auto stalled = watch_->stalled()) return Error{ErrorCode::DeadlineExceeded, *stalled};
    watch_->begin_call();
    auto r = call();
    watch_->end_call();
    if (!r)
      if (auto stalled = watch_->stalled())
        return Error{ErrorCode::DeadlineExceeded, *stalled + " (" + r.error().message + ")"};
    return r;
  }

  std::shared_ptr<ReputationStore> reputation_;
  std::map<std::string, double> claims_;  // the route's peers and their records' block_tps
  std::function<void(const std::string&, uint64_t)> on_work_;
  uint64_t calls_ = 0;
  bool failed_ = false;
  std::unique_ptr<net::Pipeline> inner_;
  std::unique_ptr<StallWatch> watch_;  // declared last: stops before the pipeline goes
};

// What every opening of a session's pipeline shares: the records read so far, the quarantine.
class Opener {
 public:
  Opener(const model::Model& model, Directory& directory, const SwarmClientOptions& options, uint32_t n_ctx,
         kernels::ThreadPool& pool, net::Identity identity, net::ModelIdentity local,
         std::shared_ptr<Verification> verification, std::shared_ptr<ReputationStore> reputation)
      : model_(model),
        verification_(std::move(verification)),
        options_(options),
        n_ctx_(n_ctx),
        pool_(pool),
        identity_(std::move(identity)),
        local_(std::move(local)),
        model_id_(model_key(local_.cid)),
        n_layer_(model.config().n_layer),
        rng_(std::random_device{}()),
        quarantine_(std::make_shared<Quarantine>()),
        reputation_(std::move(reputation)),
        keeper_(directory, model_id_, n_layer_, options.records_refresh_ms) {}

  Result<std::unique_ptr<net::Pipeline>> open() {
    if (!started_) {
      const auto t0 = Clock::now();
      if (auto r = keeper_.start(options_.lookup_wait_ms); !r) return r.error();
      lookup_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
      started_ = true;
    }
    records_ = keeper_.snapshot();
    auto opened = open_from_records();
    if (!opened && keeper_.age_s() > 0.25) {
      // Maybe the swarm changed since the last read (a node restarted elsewhere, one joined).
      const auto t0 = Clock::now();
      if (auto r = keeper_.read_now(); !r) return r.error();
      lookup_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
      records_ = keeper_.snapshot();
      opened = open_from_records();
    }
    return opened;
  }

 private:
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  // The hops as the remote pipeline splits them (net/pipeline.cpp: at each block, the node of the
  // route serving it that reaches furthest), so that a check's hidden states cross the same
  // boundaries (F16 and Q8 round there); and every node the directory lists as a checker (a check
  // verifies the model and the blocks a node serves itself).
  void publish_route(const std::vector<Replica>& on_route, const std::vector<Replica>& listed) {
    verification_->route.clear();
    for (uint32_t at = 0; at < n_layer_;) {
      const Replica* best = nullptr;
      for (const auto& r : on_route)
        if (r.block_begin <= at && at < r.block_end && (!best || r.block_end > best->block_end)) best = &r;
      if (!best) break;
      verification_->route.push_back({*best, at, best->block_end});
      at = best->block_end;
    }
    verification_->replicas.clear();
    for (const auto& r : listed)
      if (!verification_->excluded.count(r.address.peer_id)) verification_->replicas.push_back(r);
    std::shuffle(verification_->replicas.begin(), verification_->replicas.end(), rng_);
  }

  bool usable(const ProbeResult& p) const {
    const bool full = p.info.max_sessions > 0 && p.info.active_sessions >= p.info.max_sessions;
    return p.ok && p.info.model == local_ && !full;
  }

  Result<std::unique_ptr<net::Pipeline>> open_from_records() {
    if (records_.empty())
      return Error{ErrorCode::Unavailable,
                   "no node in the swarm serves " + local_.name + " (model id " + model_id_ + ")"};
    struct Node {
      const NodeRecord* record;
      net::PeerAddress address;
      std::string key;  // quarantine key
    };
    std::vector<Node> nodes;
    const int64_t now = unix_now_s();
    std::string excluded;  // the nodes left out as faulty, for the error when no route remains
    for (const auto& r : records_) {
      if (r.addresses.empty()) continue;
      if (auto known = reputation_->find(r.peer_id); known && known->excluded()) {
        log("node " + r.peer_id + " is excluded (" + known->excluded_reason + "); skipped");
        excluded += " [" + std::to_string(r.block_begin) + "," + std::to_string(r.block_end) + ")@" +
                    (r.addresses.front()) + " (" + known->excluded_reason + ")";
        continue;
      }
      auto pa = net::parse_peer_address(r.peer_id + "@" + r.addresses.front());  // the first it lists
      if (!pa) continue;
      nodes.push_back({&r, *pa, pa->to_string()});
    }
    // Every node is probed (the probing stops once the answers cover the model, so a frozen node
    // costs nothing unless it is needed); the route leaves out the nodes that failed lately
    // unless the others cannot cover the model.
    std::vector<net::PeerAddress> addresses;
    std::vector<bool> suspect;
    for (const auto& n : nodes) {
      addresses.push_back(n.address);
      suspect.push_back(quarantine_->holds(n.key));
    }
    auto enough = [&](const std::vector<ProbeResult>& so_far) {
      std::vector<std::pair<uint32_t, uint32_t>> live;
      for (const auto& p : so_far)
        if (usable(p)) live.emplace_back(p.info.block_begin, p.info.block_end);
      return covers(live, n_layer_);
    };
    const auto probing = Clock::now();
    auto probes = probe_nodes(addresses, identity_, options_.probe_timeout_ms, enough, options_.probe_grace_ms);
    const double probe_s = std::chrono::duration<double>(Clock::now() - probing).count();
    std::vector<Candidate> candidates, trusted;
    std::vector<std::pair<uint32_t, uint32_t>> trusted_ranges;
    for (size_t i = 0; i < probes.size(); ++i) {
      const auto& p = probes[i];
      const std::string where = nodes[i].address.host_port();
      const std::string& peer = nodes[i].record->peer_id;
      if (!p.ok) {
        if (p.cut_short) continue;
        (void)reputation_->record(peer, PeerEvent::Unreachable, now);
        log("node " + where + " is unreachable: " + p.error);
        quarantine_->add(nodes[i].key, options_.quarantine_s);
        continue;
      }
      // The node's own answer wins over its record for what it serves now.
      if (!(p.info.model == local_)) {
        log("node " + where + " serves another model; skipped");
        continue;
      }
      (void)reputation_->record(peer, PeerEvent::Answered, now);
      if (!usable(p)) {
        log("node " + where + " is full; skipped");
        continue;
      }
      if (verification_->excluded.count(nodes[i].record->peer_id)) continue;  // caught lying: never again
      candidates.push_back({nodes[i].record->peer_id, where, p.info.block_begin, p.info.block_end,
                            nodes[i].record->block_tps, p.rtt_s, p.info.active_sessions, p.info.queued_tokens,
                            nodes[i].record->links, reputation_->score(peer, now)});
      if (!suspect[i]) {
        trusted.push_back(candidates.back());
        trusted_ranges.emplace_back(p.info.block_begin, p.info.block_end);
      }
    }
    if (trusted.size() < candidates.size()) {
      if (covers(trusted_ranges, n_layer_)) {
        log("left out " + std::to_string(candidates.size() - trusted.size()) + " node(s) that failed lately");
        candidates = std::move(trusted);
      } else {
        log("routing through nodes that failed lately: the others do not cover the model");
      }
    }
    cap_claimed_throughput(candidates, options_.claim_cap);
    auto route = shortest_route(candidates, n_layer_, options_.jitter, &rng_, options_.topology);
    if (!route) {
      std::string seen;
      for (const auto& n : nodes)
        seen += " [" + std::to_string(n.record->block_begin) + "," + std::to_string(n.record->block_end) + ")@" +
                n.address.host_port();
      return Error{route.error().code, route.error().message + " (" + std::to_string(candidates.size()) +
                   " of the nodes answered; the directory lists" + seen +
                   (excluded.empty() ? "" : "; excluded as faulty:" + excluded) + ")"};
    }
    net::RemoteOptions remote;
    std::string chain;
    std::vector<Replica> on_route;
    std::map<std::string, double> claims;
    for (const auto& hop : route->hops) {
      const Candidate& c = candidates[hop.candidate];
      for (const auto& n : nodes)
        if (n.record->peer_id == c.peer_id) claims[c.peer_id] = n.record->block_tps;
      auto pa = net::parse_peer_address(c.peer_id + "@" + c.address);
      remote.peers.push_back(*pa);
      on_route.push_back({*pa, c.block_begin, c.block_end});
      chain += " [" + std::to_string(hop.block_begin) + "," + std::to_string(hop.block_end) + ")@" + c.address;
    }
    std::vector<Replica> listed;  // every node the directory lists (the probes stop at a cover)
    for (const auto& n : nodes) listed.push_back({n.address, n.record->block_begin, n.record->block_end});
    publish_route(on_route, listed);
    char cost[128];
    std::snprintf(cost, sizeof cost, " (est. %.1f ms/token, %zu candidates; lookup %.2f s, probes %.2f s)",
                  route->cost_s * 1e3, candidates.size(), lookup_s_, probe_s);
    lookup_s_ = 0;
    log("route:" + chain + cost);
    remote.encoding = options_.encoding;
    remote.topology = options_.topology;
    remote.data_dir = options_.data_dir;
    remote.connect_timeout_s = options_.connect_timeout_s;
    remote.call_timeout_s = options_.call_timeout_s;
    remote.receipt_every = options_.receipt_every;
    remote.model_identity = local_;
    remote.log = options_.log;  // the chain's own lines and what it paid each node (credits)
    remote.head_combiner = options_.head_combiner;
    if (options_.stall_ms == 0) {
      auto pipeline = net::make_remote_pipeline(model_, remote, n_ctx_, pool_);
      if (!pipeline) return pipeline.error();
      return std::unique_ptr<net::Pipeline>(
          new WatchedPipeline(std::move(*pipeline), nullptr, reputation_, std::move(claims), options_.on_work));
    }

    // The watch starts first: it cuts only the sockets opened after it, and watches the opening too.
    StallOptions stall;
    stall.stall_ms = options_.stall_ms;
    auto watch = StallWatch::start(remote.peers, identity_, stall,
                                   [quarantine = quarantine_, seconds = options_.quarantine_s, sink = options_.log,
                                    reputation = reputation_](const net::PeerAddress& node, const std::string& reason) {
                                     quarantine->add(node.to_string(), seconds);
                                     (void)reputation->record(node.peer_id, PeerEvent::TimedOut, unix_now_s());
                                     if (sink) sink(reason);
                                   });
    if (!watch) return watch.error();
    (*watch)->begin_call();
    auto pipeline = net::make_remote_pipeline(model_, remote, n_ctx_, pool_);
    (*watch)->end_call();
    if (auto stalled = (*watch)->stalled()) return Error{ErrorCode::DeadlineExceeded, "opening the chain: " + *stalled};
    if (!pipeline) return pipeline.error();
    return std::unique_ptr<net::Pipeline>(
        new WatchedPipeline(std::move(*pipeline), std::move(*watch), reputation_, std::move(claims), options_.on_work));
  }

  const model::Model& model_;
  std::shared_ptr<Verification> verification_;
  SwarmClientOptions options_;
  uint32_t n_ctx_;
  kernels::ThreadPool& pool_;
  net::Identity identity_;
  net::ModelIdentity local_;
  std::string model_id_;
  uint32_t n_layer_;
  std::mt19937_64 rng_;
  std::shared_ptr<Quarantine> quarantine_;
  std::shared_ptr<ReputationStore> reputation_;
  RecordKeeper keeper_;
  bool started_ = false;
  std::vector<NodeRecord> records_;  // what this opening routes on
  double lookup_s_ = 0;  // of the directory read since the last route (for the route's log line)
};

// The failover pipeline with spot checks (SwarmClientOptions::verify_rate): after a call, maybe
// checks the session so far along its route; a node outvoted there is excluded and reported, and
// when the route's result differs from the checked one, the call returns the checked result and
// the session moves to a new route (replayed).
class VerifyingPipeline final : public net::Pipeline {
 public:
  VerifyingPipeline(std::unique_ptr<FailoverPipeline> inner, std::shared_ptr<Verification> verification,
                    const model::Model& model, const SwarmClientOptions& options, net::Identity identity,
                    net::ModelIdentity model_identity, std::unique_ptr<model::Session> head, kernels::ThreadPool& pool)
      : inner_(std::move(inner)),
        verification_(std::move(verification)),
        model_(model),
        options_(options),
        identity_(std::move(identity)),
        model_identity_(std::move(model_identity)),
        head_(std::move(head)),
        pool_(pool),
        rng_(std::random_device{}()) {}

  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    // The session's first call is checked (its nodes are new to this client): the checker's
    // handshakes with those nodes go on while the call runs.
    if (history_.empty() && !checker_ && options_.verify_first > 0) connect_ahead();
    if (auto r = inner_->forward(tokens, logits); !r) return r;
    history_.emplace_back(tokens.begin(), tokens.end());
    if (!wants_check()) return {};
    return check(logits);
  }
  // A verification call's rows are summed per token (model::BatchSums::kPerToken), so a check,
  // which replays a call of several tokens as a prompt batch, can no longer compare its bits with
  // the route's: from then on checks compare the replicas with each other only.
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (auto r = inner_->forward_all(tokens, logits); !r) return r;
    history_.emplace_back(tokens.begin(), tokens.end());
    per_token_calls_ = true;
    if (!wants_check()) return {};
    return check(logits);
  }
  Result<void> rollback(uint32_t n) override {
    if (auto r = inner_->rollback(n); !r) return r;
    while (n > 0 && !history_.empty()) {
      auto& last = history_.back();
      const uint32_t drop = std::min<uint32_t>(n, static_cast<uint32_t>(last.size()));
      last.resize(last.size() - drop);
      n -= drop;
      if (last.empty()) history_.pop_back();
    }
    return {};
  }
  size_t max_batch() const override { return inner_->max_batch(); }
  std::string summary() const override {
    char waited[64];
    std::snprintf(waited, sizeof waited, " (%.0f ms)", check_ms_);
    return inner_->summary() + ", " + std::to_string(checks_) + " spot checks" + waited + ", " +
           std::to_string(verification_->excluded.size()) + " node(s) excluded";
  }

 private:
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  // Whether to check the last call: never when some hop has no other replica (no two runs could
  // agree: the check would cost the session's replay and prove nothing).
  bool wants_check() {
    if (verification_->route.empty()) return false;
    for (const auto& hop : verification_->route) {
      bool other = false;
      for (const auto& r : verification_->replicas)
        other = other || (r.address.peer_id != hop.node.address.peer_id && r.block_begin <= hop.block_begin &&
                          hop.block_end <= r.block_end && !verification_->excluded.count(r.address.peer_id));
      if (!other) return false;
    }
    for (const auto& hop : verification_->route)
      if (verification_->matched[hop.node.address.peer_id] < options_.verify_first) return true;
    return options_.verify_rate > 0 && std::bernoulli_distribution(std::min(options_.verify_rate, 1.0))(rng_);
  }

  SpotChecker& checker() {
    if (!checker_) {
      SpotCheckOptions o;
      o.encoding = options_.encoding;
      o.model = model_identity_;
      // A checker that does not answer promptly is passed over for the next one (a frozen node
      // must not hold the session up for the whole call timeout).
      o.connect_timeout_s = std::min(options_.connect_timeout_s, std::max(1u, options_.probe_timeout_ms / 1000));
      o.call_timeout_s = std::min(options_.call_timeout_s, 10u);
      o.max_batch = static_cast<uint32_t>(std::max<size_t>(2, inner_->max_batch()));
      checker_ = std::make_unique<SpotChecker>(identity_, o);
    }
    return *checker_;
  }

  // The route's nodes and, per hop, the replica a first check would take.
  void connect_ahead() {
    if (verification_->route.empty()) return;
    std::vector<Replica> nodes;
    for (const auto& hop : verification_->route) {
      nodes.push_back(hop.node);
      for (const auto& r : verification_->replicas)
        if (r.address.peer_id != hop.node.address.peer_id && r.block_begin <= hop.block_begin &&
            hop.block_end <= r.block_end && !verification_->excluded.count(r.address.peer_id)) {
          nodes.push_back(r);
          break;
        }
    }
    checker().connect(std::move(nodes));
  }

  // Checks the last call; when its result is rejected, runs it again on a new route and checks
  // that result too (a new route may hold another liar), up to kMaxRedos times.
  Result<void> check(std::vector<float>& logits) {
    for (uint32_t redo = 0;; ++redo) {
      auto rejected = check_once(logits);
      if (!rejected) return rejected.error();
      if (!*rejected) return {};
      if (redo == kMaxRedos)
        return Error{ErrorCode::Unavailable, "the result of call " + std::to_string(history_.size()) + " was rejected by spot checks on " +
                                                 std::to_string(kMaxRedos + 1) + " routes"};
      if (auto r = inner_->redo_last(logits, "a node of the route returned a result its replicas outvoted"); !r)
        return r;
    }
  }

  // One check of the last call: true when the route's result must not stand (a node of the route
  // was outvoted, or the result is not the one the replicas agree on).
  Result<bool> check_once(const std::vector<float>& logits) {
    ++checks_;
    const auto started = std::chrono::steady_clock::now();
    struct Timer {  // the time the generation waited for checks, for the summary
      std::chrono::steady_clock::time_point started;
      double& total;
      ~Timer() {
        total += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      }
    } timer{started, check_ms_};
    std::vector<Replica> replicas;  // less those excluded since the route was opened
    for (const auto& r : verification_->replicas)
      if (!verification_->excluded.count(r.address.peer_id)) replicas.push_back(r);
    auto result = checker().check(verification_->route, replicas, history_);
    const bool own_batches = result && result->own_batches && !per_token_calls_;
    if (!result) {
      log("spot check failed: " + result.error().message);
      return false;  // the call's own result stands: a check that cannot run proves nothing
    }
    std::set<std::string> matched(result->agreed.begin(), result->agreed.end());
    for (const auto& peer : matched) {
      verification_->matched[peer]++;
      (void)verification_->reputation->record(peer, PeerEvent::Verified, unix_now_s());
    }
    bool route_lied = false;
    for (const auto& report : result->faults) {
      const std::string peer = report.accused_peer();
      const auto& a = report.calls.back().accused;
      const std::string why = "returned wrong hidden states for blocks [" + std::to_string(a.block_begin) + ", " +
                              std::to_string(a.block_end) + ") at position " + std::to_string(a.position) +
                              " (outvoted on a spot check after " + std::to_string(history_.size()) + " calls)";
      if (!verification_->excluded.emplace(peer, why).second) continue;
      (void)verification_->reputation->record_fault(peer, why, unix_now_s());
      log("node " + peer + " excluded: " + why);
      for (const auto& hop : verification_->route) route_lied = route_lied || hop.node.address.peer_id == peer;
      if (!options_.fault_dir.empty()) write_report(report);
    }
    for (const auto& u : result->unresolved) log("spot check unresolved: " + u);
    bool differs = false;
    if (own_batches && !result->last_row.empty()) {
      std::vector<float> hidden, checked;
      if (auto d = net::decode_hidden(result->last_row, 1, model_.config().n_embd, options_.encoding, hidden); !d)
        return false;
      // Through the gateway's combiner when there is one: other sessions' heads use the same pool.
      Result<void> h;
      if (options_.head_combiner) {
        model::SequenceStep step{head_.get(), {}, hidden, model::Output::LastLogits, &checked, {}};
        options_.head_combiner->run(step);
        h = std::move(step.result);
      } else {
        h = head_->forward({}, hidden, model::Output::LastLogits, checked, pool_);
      }
      if (!h) return h.error();
      differs = checked.size() != logits.size() ||
                std::memcmp(checked.data(), logits.data(), logits.size() * sizeof(float)) != 0;
      if (differs)
        log("spot check: the route's result for call " + std::to_string(history_.size()) +
            " is not the one its replicas compute");
    }
    // The liar's sessions go with the route; the session is replayed on a new one, without it.
    return differs || route_lied;
  }

  void write_report(const FaultReport& report) {
    std::error_code ec;
    std::filesystem::create_directories(options_.fault_dir, ec);
    const std::string path = options_.fault_dir + "/fault-" + report.accused_peer() + "-" +
                             std::to_string(unix_now_ms()) + ".json";
    std::ofstream out(path);
    out << to_json(report) << "\n";
    if (out) log("fault report written to " + path);
    else log("cannot write the fault report " + path);
  }

  std::unique_ptr<FailoverPipeline> inner_;
  std::shared_ptr<Verification> verification_;
  const model::Model& model_;
  SwarmClientOptions options_;
  net::Identity identity_;
  net::ModelIdentity model_identity_;
  std::unique_ptr<model::Session> head_;
  kernels::ThreadPool& pool_;
  std::mt19937_64 rng_;
  std::vector<std::vector<int32_t>> history_;
  uint64_t checks_ = 0;
  double check_ms_ = 0;  // waited for checks
  bool per_token_calls_ = false;  // a forward_all was made (see there)
  static constexpr uint32_t kMaxRedos = 3;
  std::unique_ptr<SpotChecker> checker_;  // made at the first check (or connect_ahead)
};

}  // namespace

Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model, Directory& directory,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool) {
  auto identity = options.data_dir.empty() ? net::Identity::generate() : net::Identity::load_or_create(options.data_dir);
  if (!identity) return identity.error();
  auto local = options.model_identity ? Result<net::ModelIdentity>(*options.model_identity)
                                      : net::identify_model(model, options.data_dir);
  if (!local) return local.error();
  auto verification = std::make_shared<Verification>();
  std::shared_ptr<ReputationStore> reputation = options.reputation;
  if (!reputation) {
    auto opened = ReputationStore::open(options.data_dir);
    if (!opened) return opened.error();
    if (!(*opened)->recovered().empty() && options.log)
      options.log("reputation store was corrupt, started afresh: " + (*opened)->recovered());
    reputation = std::move(*opened);
  }
  verification->reputation = reputation;
  auto opener = std::make_shared<Opener>(model, directory, options, n_ctx, pool, *identity, *local, verification,
                                         std::move(reputation));
  FailoverOptions failover;
  failover.max_attempts = options.max_attempts;
  failover.backoff_ms = options.backoff_ms;
  failover.max_backoff_ms = options.max_backoff_ms;
  failover.log = options.log;
  auto pipeline = FailoverPipeline::create([opener] { return opener->open(); }, std::move(failover));
  if (!pipeline) return pipeline.error();
  if (options.verify_rate <= 0 && options.verify_first == 0) return std::unique_ptr<net::Pipeline>(std::move(*pipeline));
  auto head = model::Session::create(model, model.config().n_layer, model.config().n_layer, n_ctx);
  if (!head) return head.error();
  return std::unique_ptr<net::Pipeline>(new VerifyingPipeline(
      std::move(*pipeline), verification, model, options, std::move(*identity), std::move(*local), std::move(*head),
      pool));
}

}  // namespace omni::swarm

namespace omni::swarm {
namespace {

// Keeps the DHT node alive as long as the pipeline reading it (members go in reverse order).
class DirectoryOwningPipeline final : public net::Pipeline {
 public:
  DirectoryOwningPipeline(std::unique_ptr<DhtDirectory> directory, std::unique_ptr<net::Pipeline> inner)
      : directory_(std::move(directory)), inner_(std::move(inner)) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return inner_->forward(tokens, logits);
  }
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return inner_->forward_all(tokens, logits);
  }
  Result<void> rollback(uint32_t n) override { return inner_->rollback(n); }
  size_t max_batch() const override { return inner_->max_batch(); }
  std::string summary() const override { return inner_->summary(); }

 private:
  std::unique_ptr<DhtDirectory> directory_;
  std::unique_ptr<net::Pipeline> inner_;
};

}  // namespace

Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model,
                                                           const std::vector<std::string>& bootstrap, bool lan,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool) {
  DhtOptions dht;
  dht.bootstrap = bootstrap;
  dht.lan = lan;
  auto directory = DhtDirectory::start(dht);
  if (!directory) return directory.error();
  return make_swarm_pipeline(model, std::move(*directory), options, n_ctx, pool);
}

Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model,
                                                           std::unique_ptr<DhtDirectory> directory,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool) {
  auto inner = make_swarm_pipeline(model, *directory, options, n_ctx, pool);
  if (!inner) return inner.error();
  return std::unique_ptr<net::Pipeline>(new DirectoryOwningPipeline(std::move(directory), std::move(*inner)));
}

}  // namespace omni::swarm
