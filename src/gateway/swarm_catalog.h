// SwarmCatalog: the models of a gateway on a swarm (omni gateway --bootstrap/--lan, or --peers: a
// fixed list of nodes and no directory). It owns the gateway's DHT node, the SwarmWatch that keeps
// the live picture of the swarm, and one SwarmEngineBackend per model served.
//
// Two modes. With a model (a local file, or a CID whose client shards were fetched already) it
// serves that one. Without, it serves every model the swarm fully covers and for which some node
// announces a CID: a loader thread fetches each such model's client shards (embeddings and head,
// verified against the CID) into the store and checks that they are the model the nodes announce
// (a record can name any CID). At most max_models are loaded (a flood of fake models costs a
// bounded amount of disk and memory); a model whose load failed is tried again after retry_s.
//
// Either way, a request for a model whose coverage has a gap is refused (Unavailable) with the
// missing blocks named, before any session is opened.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "gateway/model_catalog.h"
#include "gateway/swarm_engine_backend.h"
#include "gateway/swarm_watch.h"
#include "swarm/dht_directory.h"
#include "swarm/provider_fetch.h"

namespace omni::gateway {

struct SwarmCatalogOptions {
  SwarmBackendOptions backend;  // for every model; model_id and client.model_identity are set per model, and
                                // draft is the given model's only
  SwarmWatchOptions watch;
  std::string data_dir;         // the gateway's identity (probes, sessions, fetches)
  std::string store_dir;        // where discovered models' client shards go
  swarm::ProviderFetchOptions fetching;
  size_t max_models = 4;
  uint32_t retry_s = 30;
  std::function<void(const std::string&)> log;
};

// A model given on the command line: its client part and identity.
struct GivenModel {
  std::unique_ptr<model::Model> model;
  net::ModelIdentity identity;
  std::string id;   // the name clients use
  std::string cid;  // identity.cid's text
};

class SwarmCatalog final : public ModelCatalog {
 public:
  // `given` empty: discover the models (needs a directory; `directory` null: the nodes are
  // options.backend.peers). Errors: the identity key, the model's tokenizer; InvalidArgument,
  // neither a directory nor a model.
  static Result<std::unique_ptr<SwarmCatalog>> create(std::unique_ptr<swarm::Directory> directory,
                                                      std::optional<GivenModel> given, SwarmCatalogOptions options);
  ~SwarmCatalog() override;

  std::vector<CatalogEntry> models() const override;
  Result<EngineBackend*> backend(const std::string& id) override;
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override;
  // Waits until a model is servable (or timeout_ms passed); false then.
  bool wait_for_model(uint32_t timeout_ms) const;

 private:
  struct Loaded {
    std::unique_ptr<SwarmEngineBackend> backend;
    std::string cid;
  };
  explicit SwarmCatalog(SwarmCatalogOptions options) : options_(std::move(options)) {}
  void load_loop();
  Result<void> load(const WatchedModel& model);
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  SwarmCatalogOptions options_;
  std::unique_ptr<swarm::Directory> directory_;
  std::unique_ptr<SwarmWatch> watch_;
  bool discovering_ = false;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, Loaded> loaded_;  // by model key
  std::map<std::string, std::chrono::steady_clock::time_point> failed_;  // by model key: retry after
  bool stopping_ = false;
  std::thread loader_;
};

}  // namespace omni::gateway
