// The client side of the swarm: `omni run --bootstrap` finds the nodes serving its model in the
// directory, probes them, picks the cheapest chain (routing.h) and runs the session on it through
// src/net's remote pipeline, wrapped in a FailoverPipeline that re-routes and replays when a node
// of the chain dies.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/pipeline.h"
#include "swarm/directory.h"
#include "swarm/dht_directory.h"

namespace omni::swarm {

struct SwarmClientOptions {
  net::HiddenEncoding encoding = net::HiddenEncoding::F16;
  net::Route route = net::Route::Chain;
  std::string data_dir;  // the client's identity key; empty: a throwaway key
  uint32_t connect_timeout_s = 10;
  uint32_t call_timeout_s = 60;
  uint32_t probe_timeout_ms = 3000;
  double jitter = 0.25;          // route cost noise that spreads sessions over replicas
  uint32_t max_attempts = 6;     // re-routes per failed call before giving up
  uint32_t lookup_wait_ms = 5000;  // how long to wait for the directory to show a full cover
  std::function<void(const std::string&)> log;
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

}  // namespace omni::swarm
