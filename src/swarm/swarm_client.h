// The client side of the swarm: `omni run --bootstrap` finds the nodes serving its model in the
// directory, probes them, picks the cheapest chain (routing.h) and runs the session on it through
// src/net's remote pipeline, watched for stalls (stall_watch.h) and wrapped in a FailoverPipeline
// that re-routes and replays when a node of the chain dies or stalls.
//
// Only nodes that answered the probe are routed through (a record for a dead address draws no
// route), records' throughput claims are capped (cap_claimed_throughput), and the route's latency
// follows the topology the calls take, with the node-to-node round trips the records claim,
// bounded by the client's own probes (routing.h).
//
// Verification: calls are spot-checked on other replicas (spot_check.h); a node caught returning
// wrong bits is excluded and the call's result replaced by the majority's (verify_rate, above).
//
// Each (re-)opening: the records (read again every records_refresh_ms in the background, and at
// once when they no longer give a cover), all probed at once (routing starts as soon as the nodes
// that answered cover the model, plus a short grace), the route over those that answered, leaving
// out the ones that failed lately (a failed probe or a stall keeps a node's address out for
// quarantine_s) unless the model cannot be covered without them; then the watch and the pipeline.
//
// Reputation (reputation.h): each probe is an uptime event for its peer, a stall a timeout, a
// pipeline that ends without failing a session served by each of its nodes, and the compute times
// they reported a speed measurement against their records' claims. Routes weigh candidates by
// their scores (routing.h); excluded peers are neither probed nor routed through.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/pipeline.h"
#include "swarm/directory.h"
#include "swarm/dht_directory.h"
#include "swarm/reputation.h"

namespace omni::swarm {

struct SwarmClientOptions {
  net::HiddenEncoding encoding = net::HiddenEncoding::F16;
  net::Topology topology = net::Topology::Ring;  // as `omni run` and net::RemoteOptions default to
  std::string data_dir;  // the client's identity key; empty: a throwaway key
  uint32_t connect_timeout_s = 10;
  uint32_t call_timeout_s = 60;
  uint32_t probe_timeout_ms = 3000;
  double jitter = 0.25;          // route cost noise that spreads sessions over replicas
  double claim_cap = 4.0;        // throughput claims count up to this times the median (routing.h)
  uint32_t max_attempts = 10;      // re-routes per failed call (and for the first opening)
  uint32_t backoff_ms = 100;       // before the second attempt, doubling up to max_backoff_ms
  uint32_t max_backoff_ms = 1000;
  uint32_t lookup_wait_ms = 5000;  // how long the first lookup waits for the directory to show a full cover
  uint32_t stall_ms = 3000;        // a chain node silent this long while a call waits is dropped; 0: no watch
  uint32_t quarantine_s = 10;      // how long a node that failed stays out of routes
  uint32_t records_refresh_ms = 3000;  // the directory is read again this often, in the background
  uint32_t probe_grace_ms = 150;   // after the answers cover the model, wait this long for more
  uint32_t receipt_every = net::RemoteOptions{}.receipt_every;  // credits (net::RemoteOptions)
  // The model to find in the directory and to match nodes against; default net::identify_model of
  // the model given, its CID cached in data_dir (see net::RemoteOptions::model_identity).
  std::optional<net::ModelIdentity> model_identity;
  std::function<void(const std::string&)> log;
  // Spot checks (spot_check.h): the first verify_first calls whose route holds a node not yet
  // matched by a second replica that often, and then each call with probability verify_rate, are
  // checked. A node outvoted on a check is excluded from routes for the rest of the client's life,
  // its FaultReport written to fault_dir (when set) and the session re-routed with the honest
  // result. verify_rate 0 and verify_first 0: no checks.
  double verify_rate = 0.02;
  uint32_t verify_first = 2;
  std::string fault_dir;
  // Shared by every session of a process (a gateway's); null: opened from data_dir (memory only
  // without one) for this pipeline.
  std::shared_ptr<ReputationStore> reputation;
  // Called as each pipeline of the session goes (a failover drops one), per node of its route: the
  // work (tokens × blocks) this client received from it. A gateway's contribution ledger.
  std::function<void(const std::string& peer_id, uint64_t work)> on_work;
};

// Looks up `model` in `directory`, then opens a failover-protected pipeline on the best chain.
// `directory` must outlive the pipeline (it is read again on failover). Errors: no records, a
// block nobody serves, every route failing.
Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model, Directory& directory,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool);

}  // namespace omni::swarm

namespace omni::swarm {

// The same, with a DHT node of the client's own joined through `bootstrap` ("HOST:PORT" list);
// the pipeline owns it. `omni run --bootstrap` calls this.
Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model,
                                                           const std::vector<std::string>& bootstrap, bool lan,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool);
// The same on a DHT node started already (e.g. one that found the model's providers first); the
// pipeline owns it.
Result<std::unique_ptr<net::Pipeline>> make_swarm_pipeline(const model::Model& model,
                                                           std::unique_ptr<DhtDirectory> directory,
                                                           const SwarmClientOptions& options, uint32_t n_ctx,
                                                           kernels::ThreadPool& pool);

}  // namespace omni::swarm
