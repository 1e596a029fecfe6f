#include "swarm/swarm_client.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "net/node_info.h"
#include "swarm/failover.h"
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

// Runs the inner pipeline's calls under a stall watch; once the watch has cut the connections,
// every call fails with its reason.
class WatchedPipeline final : public net::Pipeline {
 public:
  WatchedPipeline(std::unique_ptr<net::Pipeline> inner, std::unique_ptr<StallWatch> watch)
      : inner_(std::move(inner)), watch_(std::move(watch)) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (auto stalled = watch_->stalled()) return Error{ErrorCode::DeadlineExceeded, *stalled};
    watch_->begin_call();
    auto r = inner_->forward(tokens, logits);
    watch_->end_call();
    if (!r)
      if (auto stalled = watch_->stalled())
        return Error{ErrorCode::DeadlineExceeded, *stalled + " (" + r.error().message + ")"};
    return r;
  }
  size_t max_batch() const override { return inner_->max_batch(); }
  std::string summary() const override { return inner_->summary(); }

 private:
  std::unique_ptr<net::Pipeline> inner_;
  std::unique_ptr<StallWatch> watch_;  // declared last: stops before the pipeline goes
};

// What every opening of a session's pipeline shares: the records read so far, the quarantine.
class Opener {
 public:
  Opener(const model::Model& model, Directory& directory, const SwarmClientOptions& options, uint32_t n_ctx,
         kernels::ThreadPool& pool, net::Identity identity, net::ModelIdentity local)
      : model_(model),
        options_(options),
        n_ctx_(n_ctx),
        pool_(pool),
        identity_(std::move(identity)),
        local_(std::move(local)),
        model_id_(model_key(local_.cid)),
        n_layer_(model.config().n_layer),
        rng_(std::random_device{}()),
        quarantine_(std::make_shared<Quarantine>()),
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
    for (const auto& r : records_) {
      if (r.addresses.empty()) continue;
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
      if (!p.ok) {
        if (p.cut_short) continue;
        log("node " + where + " is unreachable: " + p.error);
        quarantine_->add(nodes[i].key, options_.quarantine_s);
        continue;
      }
      // The node's own answer wins over its record for what it serves now.
      if (!(p.info.model == local_)) {
        log("node " + where + " serves another model; skipped");
        continue;
      }
      if (!usable(p)) {
        log("node " + where + " is full; skipped");
        continue;
      }
      candidates.push_back({nodes[i].record->peer_id, where, p.info.block_begin, p.info.block_end,
                            nodes[i].record->block_tps, p.rtt_s, p.info.active_sessions, p.info.queued_tokens,
                            nodes[i].record->links});
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
                   " of the nodes answered; the directory lists" + seen + ")"};
    }
    net::RemoteOptions remote;
    std::string chain;
    for (const auto& hop : route->hops) {
      const Candidate& c = candidates[hop.candidate];
      auto pa = net::parse_peer_address(c.peer_id + "@" + c.address);
      remote.peers.push_back(*pa);
      chain += " [" + std::to_string(hop.block_begin) + "," + std::to_string(hop.block_end) + ")@" + c.address;
    }
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
    remote.model_identity = local_;
    remote.log = options_.log;  // the chain's own lines and what it paid each node (credits)
    remote.head_combiner = options_.head_combiner;
    if (options_.stall_ms == 0) return net::make_remote_pipeline(model_, remote, n_ctx_, pool_);

    // The watch starts first: it cuts only the sockets opened after it, and watches the opening too.
    StallOptions stall;
    stall.stall_ms = options_.stall_ms;
    auto watch = StallWatch::start(remote.peers, identity_, stall,
                                   [quarantine = quarantine_, seconds = options_.quarantine_s, sink = options_.log](
                                       const net::PeerAddress& node, const std::string& reason) {
                                     quarantine->add(node.to_string(), seconds);
                                     if (sink) sink(reason);
                                   });
    if (!watch) return watch.error();
    (*watch)->begin_call();
    auto pipeline = net::make_remote_pipeline(model_, remote, n_ctx_, pool_);
    (*watch)->end_call();
    if (auto stalled = (*watch)->stalled()) return Error{ErrorCode::DeadlineExceeded, "opening the chain: " + *stalled};
    if (!pipeline) return pipeline.error();
    return std::unique_ptr<net::Pipeline>(new WatchedPipeline(std::move(*pipeline), std::move(*watch)));
  }

  const model::Model& model_;
  SwarmClientOptions options_;
  uint32_t n_ctx_;
  kernels::ThreadPool& pool_;
  net::Identity identity_;
  net::ModelIdentity local_;
  std::string model_id_;
  uint32_t n_layer_;
  std::mt19937_64 rng_;
  std::shared_ptr<Quarantine> quarantine_;
  RecordKeeper keeper_;
  bool started_ = false;
  std::vector<NodeRecord> records_;  // what this opening routes on
  double lookup_s_ = 0;  // of the directory read since the last route (for the route's log line)
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
  auto opener =
      std::make_shared<Opener>(model, directory, options, n_ctx, pool, std::move(*identity), std::move(*local));
  FailoverOptions failover;
  failover.max_attempts = options.max_attempts;
  failover.backoff_ms = options.backoff_ms;
  failover.max_backoff_ms = options.max_backoff_ms;
  failover.log = options.log;
  auto pipeline = FailoverPipeline::create([opener] { return opener->open(); }, std::move(failover));
  if (!pipeline) return pipeline.error();
  return std::unique_ptr<net::Pipeline>(std::move(*pipeline));
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
