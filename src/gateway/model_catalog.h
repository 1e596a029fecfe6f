// ModelCatalog: the models a gateway serves, each behind an EngineBackend the catalog owns (a
// backend lives as long as the catalog). The local gateway has one model (SingleModelCatalog); a
// gateway on a swarm serves the models the swarm covers (swarm_catalog.h), which come and go.
//
// Threads: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "gateway/engine_backend.h"

namespace omni::gateway {

struct CatalogEntry {
  std::string id;   // what clients put in "model"
  std::string cid;  // the model's CID, when it is served from content-addressed shards
  uint32_t context_length = 0;  // its backend's n_ctx: prompt and completion of one request together
};

class ModelCatalog {
 public:
  virtual ~ModelCatalog() = default;
  // The models that can be served now (GET /v1/models).
  virtual std::vector<CatalogEntry> models() const = 0;
  // The backend of model `id` (its name, or its CID). Errors, with messages meant for the client:
  // NotFound, no such model; Unavailable, the model is known but cannot be served now (its
  // coverage has a gap, named block by block, or it is still being loaded).
  virtual Result<EngineBackend*> backend(const std::string& id) = 0;
  virtual SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const = 0;
};

// One backend, always available.
class SingleModelCatalog final : public ModelCatalog {
 public:
  explicit SingleModelCatalog(std::unique_ptr<EngineBackend> backend) : backend_(std::move(backend)) {}
  std::vector<CatalogEntry> models() const override {
    return {{backend_->description().id, "", backend_->description().n_ctx}};
  }
  Result<EngineBackend*> backend(const std::string& id) override;
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override { return backend_->swarm_snapshot(load); }

 private:
  std::unique_ptr<EngineBackend> backend_;
};

}  // namespace omni::gateway
