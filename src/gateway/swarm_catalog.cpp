#include "gateway/swarm_catalog.h"

#include <chrono>
#include <filesystem>

#include "store/blob_store.h"
#include "store/cid.h"
#include "swarm/client_shards.h"
#include "swarm/record.h"

namespace omni::gateway {
namespace {

using Clock = std::chrono::steady_clock;

Error gap(const std::string& id, const WatchedModel& m) {
  return Error{ErrorCode::Unavailable, "the model '" + id + "' is not fully served by the swarm: no live node serves " +
                                           describe_blocks(m.missing()) + " of its " + std::to_string(m.n_layer)};
}

}  // namespace

Result<std::unique_ptr<SwarmCatalog>> SwarmCatalog::create(std::unique_ptr<swarm::Directory> directory,
                                                           std::optional<GivenModel> given,
                                                           SwarmCatalogOptions options) {
  if (!directory && !given)
    return Error{ErrorCode::InvalidArgument, "a gateway on a fixed list of nodes needs the model (--model)"};
  if (!directory) options.watch.peers = options.backend.peers;
  auto identity = options.data_dir.empty() ? net::Identity::generate() : net::Identity::load_or_create(options.data_dir);
  if (!identity) return identity.error();
  // One reputation store for every session and the watch: what the gateway saw of each node.
  auto reputation = swarm::ReputationStore::open(options.data_dir);
  if (!reputation) return reputation.error();
  if (!(*reputation)->recovered().empty() && options.watch.log)
    options.watch.log("reputation store was corrupt, started afresh: " + (*reputation)->recovered());
  options.backend.client.reputation = *reputation;
  options.watch.reputation = *reputation;
  std::unique_ptr<SwarmCatalog> catalog(new SwarmCatalog(std::move(options)));
  catalog->directory_ = std::move(directory);
  catalog->watch_ = std::make_unique<SwarmWatch>(catalog->directory_.get(), std::move(*identity), catalog->options_.watch);
  if (given) {
    SwarmBackendOptions b = catalog->options_.backend;
    b.model_id = given->id;
    b.client.model_identity = given->identity;
    auto backend = SwarmEngineBackend::create(std::move(given->model), catalog->directory_.get(), *catalog->watch_, b);
    if (!backend) return backend.error();
    catalog->loaded_[swarm::model_key(given->identity.cid)] = {std::move(*backend), given->cid};
  } else {
    catalog->discovering_ = true;
    catalog->loader_ = std::thread([c = catalog.get()] { c->load_loop(); });
  }
  return catalog;
}

SwarmCatalog::~SwarmCatalog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (loader_.joinable()) loader_.join();
}

std::vector<CatalogEntry> SwarmCatalog::models() const {
  std::lock_guard lock(mutex_);
  std::vector<CatalogEntry> out;
  for (const auto& [key, l] : loaded_)
    if (auto m = watch_->model(key); m && m->complete()) out.push_back({l.backend->description().id, l.cid, l.backend->description().n_ctx});
  return out;
}

Result<EngineBackend*> SwarmCatalog::backend(const std::string& id) {
  std::lock_guard lock(mutex_);
  for (const auto& [key, l] : loaded_) {
    if (l.backend->description().id != id && (l.cid.empty() || l.cid != id)) continue;
    auto m = watch_->model(key);
    if (!m) return Error{ErrorCode::Unavailable, "no live node of the swarm serves the model '" + id + "' now"};
    if (!m->complete()) return gap(id, *m);
    return static_cast<EngineBackend*>(l.backend.get());
  }
  std::string served;
  for (const auto& [key, l] : loaded_) served += (served.empty() ? "" : ", ") + l.backend->description().id;
  if (discovering_) {
    for (const WatchedModel& m : watch_->models()) {
      if (m.name != id && (m.cid.empty() || m.cid != id)) continue;
      if (!m.complete()) return gap(id, m);
      if (!m.shared)
        return Error{ErrorCode::Unavailable, "the model '" + id +
                                                 "' is served by the swarm, but no node shares its shards, so this "
                                                 "gateway cannot fetch its embeddings and head"};
      return Error{ErrorCode::Unavailable,
                   "the model '" + id + "' is being loaded (its embeddings and head are fetched); retry shortly"};
    }
  }
  return Error{ErrorCode::NotFound, "the model '" + id + "' does not exist; this gateway serves " +
                                        (served.empty() ? std::string("no model yet") : served)};
}

SwarmSnapshot SwarmCatalog::swarm_snapshot(const GatewayLoad&) const { return watch_->snapshot(); }

bool SwarmCatalog::wait_for_model(uint32_t timeout_ms) const {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (models().empty()) {
    if (Clock::now() >= deadline) return false;
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::milliseconds(200));
  }
  return true;
}

void SwarmCatalog::load_loop() {
  for (;;) {
    {
      // Once per refresh; the destructor wakes it.
      std::unique_lock lock(mutex_);
      if (changed_.wait_for(lock, std::chrono::milliseconds(options_.watch.refresh_ms), [&] { return stopping_; }))
        return;
    }
    for (const WatchedModel& m : watch_->models()) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        if (!m.complete() || !m.shared || loaded_.count(m.key) || loaded_.size() >= options_.max_models) continue;
        if (auto f = failed_.find(m.key); f != failed_.end() && Clock::now() < f->second) continue;
      }
      if (auto r = load(m); !r) {
        log("cannot serve the model " + m.name + " (" + m.cid + "): " + r.error().message + "; retrying in " +
            std::to_string(options_.retry_s) + " s");
        std::lock_guard lock(mutex_);
        failed_[m.key] = Clock::now() + std::chrono::seconds(options_.retry_s);
      }
    }
  }
}

Result<void> SwarmCatalog::load(const WatchedModel& m) {
  auto cid = store::Cid::parse(m.cid);
  if (!cid) return cid.error();
  std::error_code ec;
  std::filesystem::create_directories(options_.store_dir, ec);
  if (ec) return Error{ErrorCode::Internal, "cannot create the store directory " + options_.store_dir + ": " + ec.message()};
  auto store = store::BlobStore::open(options_.store_dir);
  if (!store) return store.error();
  auto shards = swarm::load_client_shards(**store, *cid, directory_.get(), options_.fetching);
  if (!shards) return shards.error();
  if (swarm::model_key(shards->identity.cid) != m.key)
    return Error{ErrorCode::Corruption, "the CID announced for it holds another model (" + shards->identity.to_string() + ")"};
  SwarmBackendOptions b = options_.backend;
  b.model_id = m.name;
  b.client.model_identity = shards->identity;
  b.draft = nullptr;  // a draft model drafts for the given model (--model) only
  auto backend = SwarmEngineBackend::create(std::move(shards->model), directory_.get(), *watch_, b);
  if (!backend) return backend.error();
  log("serving the model " + m.name + " (" + m.cid + ")");
  std::lock_guard lock(mutex_);
  loaded_[m.key] = {std::move(*backend), m.cid};
  changed_.notify_all();
  return {};
}

}  // namespace omni::gateway
