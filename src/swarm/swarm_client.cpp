#include "swarm/swarm_client.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "net/node_info.h"
#include "swarm/failover.h"
#include "swarm/probe.h"
#include "swarm/routing.h"

namespace omni::swarm {
namespace {

// Records for the model, waiting a little for a full cover (a client started together with the
// swarm, or right after a node joined, may see a partial picture at first).
Result<std::vector<NodeRecord>> find_nodes(Directory& directory, const std::string& model_id, uint32_t n_layer,
                                           uint32_t wait_ms, const SwarmClientOptions& o) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    auto found = lookup(directory, model_id);
    if (!found) return found.error();
    if (found->rejected > 0 && o.log)
      o.log("directory: dropped " + std::to_string(found->rejected) + " bad record(s): " + found->reasons.front());
    std::vector<bool> covered(n_layer, false);
    for (const auto& r : found->records)
      for (uint32_t b = r.block_begin; b < r.block_end && b < n_layer; ++b) covered[b] = true;
    const bool full = std::all_of(covered.begin(), covered.end(), [](bool c) { return c; });
    if (full || std::chrono::steady_clock::now() >= deadline) return found->records;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model, Directory& directory,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool) {
  auto identity = options.data_dir.empty() ? net::Identity::generate() : net::Identity::load_or_create(options.data_dir);
  if (!identity) return identity.error();
  const net::ModelIdentity local = net::identify_model(model);
  const std::string model_id = model_key(local.header_sha256);
  const uint32_t n_layer = model.config().n_layer;
  auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
  auto log = [sink = options.log](const std::string& line) {
    if (sink) sink(line);
  };

  // Each call: fresh records, live probes (dead nodes drop out here), a route, a remote pipeline.
  FailoverPipeline::Opener open = [=, &model, &directory, &pool, first = true]() mutable
      -> Result<std::unique_ptr<net::Pipeline>> {
    auto records = find_nodes(directory, model_id, n_layer, first ? options.lookup_wait_ms : 1000, options);
    first = false;
    if (!records) return records.error();
    if (records->empty()) return Error{"no node in the swarm serves " + local.name + " (model id " + model_id + ")"};
    std::vector<net::PeerAddress> addresses;
    std::vector<const NodeRecord*> owners;
    for (const auto& r : *records)
      for (const auto& a : r.addresses) {
        auto pa = net::parse_peer_address(r.peer_id + "@" + a);
        if (!pa) continue;
        addresses.push_back(*pa);
        owners.push_back(&r);
        break;  // one address per node: the first it lists
      }
    auto probes = probe_nodes(addresses, *identity, options.probe_timeout_ms);
    std::vector<Candidate> candidates;
    for (size_t i = 0; i < probes.size(); ++i) {
      const auto& p = probes[i];
      if (!p.ok) {
        log("node " + addresses[i].host_port() + " is unreachable: " + p.error);
        continue;
      }
      // The node's own answer wins over its record for what it serves now.
      if (!(p.info.model == local)) {
        log("node " + addresses[i].host_port() + " serves another model; skipped");
        continue;
      }
      if (p.info.max_sessions > 0 && p.info.active_sessions >= p.info.max_sessions) {
        log("node " + addresses[i].host_port() + " is full; skipped");
        continue;
      }
      candidates.push_back({owners[i]->peer_id, addresses[i].host_port(), p.info.block_begin, p.info.block_end,
                            owners[i]->block_tps, p.rtt_s});
    }
    auto route = shortest_route(candidates, n_layer, options.jitter, rng.get());
    if (!route) return route.error();
    net::RemoteOptions remote;
    std::string chain;
    for (const auto& hop : route->hops) {
      const Candidate& c = candidates[hop.candidate];
      auto pa = net::parse_peer_address(c.peer_id + "@" + c.address);
      remote.peers.push_back(*pa);
      chain += " [" + std::to_string(hop.block_begin) + "," + std::to_string(hop.block_end) + ")@" + c.address;
    }
    char cost[64];
    std::snprintf(cost, sizeof cost, " (est. %.1f ms/token, %zu candidates)", route->cost_s * 1e3, candidates.size());
    log("route:" + chain + cost);
    remote.encoding = options.encoding;
    remote.route = options.route;
    remote.data_dir = options.data_dir;
    remote.connect_timeout_s = options.connect_timeout_s;
    remote.call_timeout_s = options.call_timeout_s;
    return net::make_remote_pipeline(model, remote, n_ctx, pool);
  };
  auto pipeline = FailoverPipeline::create(std::move(open), options.max_attempts, options.log);
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
  auto inner = make_swarm_pipeline(model, **directory, options, n_ctx, pool);
  if (!inner) return inner.error();
  return std::unique_ptr<net::Pipeline>(new DirectoryOwningPipeline(std::move(*directory), std::move(*inner)));
}

}  // namespace omni::swarm
