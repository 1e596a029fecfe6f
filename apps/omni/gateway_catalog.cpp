#include "gateway_catalog.h"

#include <sys/stat.h>

#include <filesystem>

#include "cli_options.h"
#include "gateway/local_engine_backend.h"
#include "gateway/swarm_catalog.h"
#include "net/node_info.h"
#include "store/blob_store.h"
#include "store/cid.h"
#include "swarm/client_shards.h"

namespace omni::cli {

void add_gateway_swarm_flags(CLI::App* cmd, GatewaySource& s) {
  auto* bootstrap = add_host_port_list(cmd, "--bootstrap", s.bootstrap,
                                       "Serve the swarm found through these DHT nodes, HOST:PORT: --model (a file or a "
                                       "CID) runs on its nodes; without --model, every model the swarm fully covers");
  auto* lan = cmd->add_flag("--lan", s.lan, "Serve the swarm found on the LAN by multicast (as --bootstrap)");
  add_peer_list(cmd, "--peers", s.peers,
                "Run --model (a file or a CID, whose embeddings and head these nodes provide) on these nodes: "
                "[ID@]HOST:PORT,... (as omni run --peers; no failover)")
      ->excludes(bootstrap)
      ->excludes(lan);
  cmd->add_option("--hidden-format", s.hidden_format, "With --bootstrap or --lan: hidden states as f16, f32 or q8")
      ->capture_default_str()
      ->check(hidden_format_name());
  cmd->add_option("--route", s.route, "With --bootstrap or --lan: ring, chain or direct (as omni run)")
      ->capture_default_str()
      ->check(route_name());
  add_data_dir(cmd, s.data_dir,
               "With --bootstrap or --lan: directory of the gateway's identity key and of its store (model CIDs)");
  add_timeout(cmd, "--timeout", s.call_timeout_s,
              "With --bootstrap or --lan: seconds a node may take per call (whole seconds, rounded up)")
      ->capture_default_str();
  add_timeout(cmd, "--stall-timeout", s.stall_timeout_s,
              "With --bootstrap or --lan: seconds a node of a chain may answer no heartbeat while a call waits "
              "before it is routed around (0: only --timeout)",
              /*zero_means_off=*/true)
      ->capture_default_str();
  cmd->add_option("--verify-rate", s.verify_rate,
                  "With --bootstrap or --lan: the fraction of calls spot-checked on other replicas (nodes caught "
                  "returning wrong results are excluded; fault reports go to <data-dir>/faults)")
      ->check(number_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--verify-first", s.verify_first,
                  "With --bootstrap or --lan: calls checked while their route holds a node not yet matched this often")
      ->check(count_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--max-models", s.max_models,
                  "Without --model on a swarm: the most models served at once (each holds its embeddings and head)")
      ->capture_default_str()
      ->check(count_in(1, 64));
  cmd->add_option("--draft", s.draft,
                  "On a swarm, with --model: speculative decoding, a small GGUF with the model's vocabulary (e.g. a "
                  "Q8_0 copy of an F16 model) drafts tokens that the nodes verify several per trip")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--draft-fixed", s.draft_fixed,
                "On a swarm: draft --draft-max tokens every trip instead of adapting K (to measure one K)");
  cmd->add_option("--draft-max", s.draft_max, "On a swarm: most tokens drafted per trip (adapted below it; 0: none)")
      ->capture_default_str()
      ->check(count_in(0, 15));
  cmd->add_option("--lookup", s.lookup,
                  "On a swarm, without --draft: draft from the context (prompt lookup): on, off, or auto (greedy "
                  "requests; turned down when its drafts are not accepted)")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off", "auto"}));
}

namespace {

std::string stem(const std::string& name) {
  const std::string s = std::filesystem::path(name).filename().string();
  return s.ends_with(".gguf") && s.size() > 5 ? s.substr(0, s.size() - 5) : s;
}

Result<std::unique_ptr<gateway::ModelCatalog>> swarm_catalog(const GatewaySource& s,
                                                             const std::function<void(const std::string&)>& log) {
  const std::string data_dir = data_dir_or_default(s.data_dir);
  gateway::SwarmCatalogOptions options;
  options.data_dir = data_dir;
  options.store_dir = data_dir + "/store";
  options.max_models = s.max_models;
  options.log = log;
  options.fetching.fetch.data_dir = data_dir;
  options.fetching.fetch.log = log;
  options.watch.log = log;
  options.fetching.fetch.peers = s.peers;
  gateway::SwarmBackendOptions& b = options.backend;
  if (!s.peers.empty()) {
    auto peers = net::parse_peer_list(s.peers);
    if (!peers) return peers.error().with_context("--peers");
    b.peers = std::move(*peers);
  }
  auto encoding = net::parse_hidden_encoding(s.hidden_format);
  if (!encoding) return encoding.error();
  b.client.encoding = *encoding;
  auto topology = net::parse_topology(s.route);
  if (!topology) return topology.error();
  b.client.topology = *topology;
  b.client.data_dir = data_dir;
  b.client.call_timeout_s = whole_seconds(s.call_timeout_s);
  b.client.stall_ms = static_cast<uint32_t>(s.stall_timeout_s * 1000);
  b.client.verify_rate = s.verify_rate;
  b.client.verify_first = s.verify_first;
  b.client.fault_dir = data_dir + "/faults";
  b.client.log = log;
  if (s.contributions)
    b.client.on_work = [ledger = s.contributions, log](const std::string& node, uint64_t work) {
      if (auto r = ledger->add(node, work); !r && log) log("fair use: " + r.error().message);
    };
  b.n_ctx = s.ctx;
  b.threads = s.threads;
  b.lookup = s.lookup != "off";
  b.lookup_sampled = s.lookup == "on";
  b.draft_max = s.draft_max;
  b.draft_fixed = s.draft_fixed;
  if (!s.draft.empty()) {
    auto draft = model::Model::load(s.draft);
    if (!draft) return draft.error().with_context("--draft");
    b.draft = std::move(*draft);
  }

  std::unique_ptr<swarm::Directory> directory;
  if (s.peers.empty()) {
    swarm::DhtOptions dht;
    dht.bootstrap = s.bootstrap;
    dht.lan = s.lan;
    auto started = swarm::DhtDirectory::start(dht);
    if (!started) return started.error();
    directory = std::move(*started);
  }

  std::optional<gateway::GivenModel> given;
  if (!s.model.empty()) {
    given.emplace();
    struct stat st;
    if (::stat(s.model.c_str(), &st) == 0) {
      auto loaded = model::Model::load(s.model);
      if (!loaded) return loaded.error();
      auto identified = net::identify_model(**loaded, data_dir);
      if (!identified) return identified.error();
      given->identity = std::move(*identified);
      given->cid = given->identity.cid.to_string();
      given->model = std::move(*loaded);
      given->id = s.model_name.empty() ? stem(s.model) : s.model_name;
    } else {
      auto cid = store::Cid::parse(s.model);
      if (!cid) return Error{ErrorCode::NotFound, "--model " + s.model + " is neither a file nor a model CID"};
      std::error_code ec;
      std::filesystem::create_directories(options.store_dir, ec);
      if (ec) return Error{ErrorCode::Internal, "cannot create the store directory " + options.store_dir + ": " + ec.message()};
      auto store = store::BlobStore::open(options.store_dir);
      if (!store) return store.error();
      auto shards = swarm::load_client_shards(**store, *cid, directory.get(), options.fetching);
      if (!shards) return shards.error();
      given->identity = shards->identity;
      given->model = std::move(shards->model);
      given->id = s.model_name.empty() ? stem(given->identity.name) : s.model_name;
      given->cid = s.model;
    }
  }
  auto catalog = gateway::SwarmCatalog::create(std::move(directory), std::move(given), options);
  if (!catalog) return catalog.error();
  // Serving starts either way; waiting a little only makes the first /v1/models complete.
  if (!(*catalog)->wait_for_model(15000)) log("no model of the swarm is fully served yet; serving as they appear");
  return std::unique_ptr<gateway::ModelCatalog>(std::move(*catalog));
}

}  // namespace

Result<std::unique_ptr<gateway::ModelCatalog>> make_gateway_catalog(const GatewaySource& s,
                                                                    const std::function<void(const std::string&)>& log) {
  if (s.on_swarm()) return swarm_catalog(s, log);
  gateway::LocalBackendOptions options;
  options.model_path = s.model;
  options.model_id = s.model_name;
  options.threads = s.threads;
  options.n_ctx = s.ctx;
  options.prefill_chunk = s.prefill_chunk;
  options.address = s.address;
  auto backend = gateway::LocalEngineBackend::load(options);
  if (!backend) return backend.error();
  return std::unique_ptr<gateway::ModelCatalog>(std::make_unique<gateway::SingleModelCatalog>(std::move(*backend)));
}

}  // namespace omni::cli
