// Where `omni gateway` gets its models: a local file run in this process (LocalEngineBackend), or
// the swarm (--bootstrap, --lan): the model given as a file or a CID, or with no --model every
// model the swarm fully covers (gateway/swarm_catalog.h), the blocks running on the swarm's nodes;
// or a fixed list of nodes (--peers, with --model), as `omni run --peers`.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "gateway/contribution_ledger.h"
#include "gateway/model_catalog.h"

namespace omni::cli {

struct GatewaySource {
  std::string model;       // a GGUF file, a model CID (swarm only), or empty (swarm only: discover)
  std::string model_name;  // the name clients use; default the file's name without ".gguf"
  int threads = 0;
  uint32_t ctx = 0;
  size_t prefill_chunk = 512;  // local model: prompt tokens per step of one sequence
  std::string address;     // where the gateway listens (the local backend's swarm view)
  // The swarm.
  std::vector<std::string> bootstrap;
  bool lan = false;
  std::string peers;       // [ID@]HOST:PORT,...
  std::string hidden_format = "f16";
  std::string route = "ring";
  std::string data_dir;
  double call_timeout_s = 60;
  double stall_timeout_s = 3;
  double verify_rate = 0.02;   // --verify-rate: swarm::SwarmClientOptions::verify_rate
  uint32_t verify_first = 2;   // --verify-first
  size_t max_models = 4;
  // Speculative decoding on the swarm (SwarmBackendOptions).
  std::string draft;            // a GGUF with the model's vocabulary; needs --model
  uint32_t draft_max = 8;
  bool draft_fixed = false;
  std::string lookup = "auto";  // on, off, auto (greedy requests)
  // Fair use: the work each node did for this gateway's sessions is added here (swarm only).
  std::shared_ptr<gateway::ContributionLedger> contributions;

  bool on_swarm() const { return !bootstrap.empty() || lan || !peers.empty(); }
};

// --bootstrap, --lan, --peers, --hidden-format, --route, --data-dir, --timeout, --stall-timeout,
// --verify-rate, --verify-first, --max-models, --draft, --draft-max, --lookup.
void add_gateway_swarm_flags(CLI::App* cmd, GatewaySource& source);

// Loads the local model, or joins the swarm and loads what the gateway needs of its models; `log`
// gets progress lines. Errors: the model's (missing file, bad CID, shards nobody provides), the
// DHT node's.
Result<std::unique_ptr<gateway::ModelCatalog>> make_gateway_catalog(const GatewaySource& source,
                                                                    const std::function<void(const std::string&)>& log);

}  // namespace omni::cli
