#include "swarm/node_runtime.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <kj/async-io.h>
#include <optional>
#include <vector>

#include "base/parse.h"
#include "model/model.h"
#include "net/node_info.h"
#include "net/peer_address.h"
#include "net/peer_fetch.h"
#include "net/relay_client.h"
#include "net/tls.h"
#include "store/blob_store.h"
#include "store/model_cid_cache.h"
#include "store/service.h"
#include "store/shard.h"
#include "store/sharded_model.h"
#include "swarm/move_drain.h"
#include "swarm/port_mapping_keeper.h"
#include "swarm/provider_fetch.h"
#include "swarm/provider_record.h"

namespace omni::swarm {

// What start() builds and the serving thread uses; destroyed on the serving thread's way out
// (membership first: its record stops being refreshed before the node stops answering).
struct NodeRuntime::Prepared {
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<store::BlobService> blob_service;
  std::shared_ptr<net::TlsContext> relay_tls;
  std::unique_ptr<net::NodeServer> server;
  std::unique_ptr<Membership> membership;
};

namespace {

std::string span_text(Span s) { return std::to_string(s.begin) + ":" + std::to_string(s.end); }

Error blocks_beyond(Span blocks, uint32_t n_layer, const std::string& model) {
  return Error{ErrorCode::InvalidArgument, "blocks " + span_text(blocks) + " are beyond model " + model + "'s " +
                                               std::to_string(n_layer) + " blocks"};
}

}  // namespace

void NodeRuntime::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

Result<std::unique_ptr<NodeRuntime>> NodeRuntime::start(NodeRuntimeOptions options) {
  std::unique_ptr<NodeRuntime> rt(new NodeRuntime());
  rt->options_ = std::move(options);
  NodeRuntimeOptions& o = rt->options_;
  auto prepared = std::make_shared<Prepared>();
  if (o.model.empty()) return Error{ErrorCode::InvalidArgument, "--model is required"};
  if (o.blocks && o.blocks->begin >= o.blocks->end)
    return Error{ErrorCode::InvalidArgument, "blocks " + span_text(*o.blocks) + " are not A:B with A < B"};
  if (!o.relay.empty()) {
    auto r = net::parse_peer_address(o.relay);
    if (!r || r->relayed)
      return Error{ErrorCode::InvalidArgument, "--relay '" + o.relay + "' is not [ID@]HOST:PORT of a relay"};
    rt->relay_ = *r;
  }
  rt->listen_ = o.listen ? *o.listen : rt->relay_ ? "127.0.0.1:0" : "0.0.0.0:7000";
  auto listen_address = net::parse_listen_address(rt->listen_);
  if (!listen_address || listen_address->relayed)
    return Error{ErrorCode::InvalidArgument, "--listen '" + rt->listen_ + "' is not HOST:PORT"};
  // A node told where to listen keeps its DHT socket there too (a node on loopback or one
  // interface must not answer UDP on every address). Without --listen it binds all addresses: a
  // node behind a relay listens on loopback only but still needs the DHT outside.
  if (o.listen) o.swarm.dht_host = listen_address->host;
  const std::string data_dir = o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir;
  const auto log = [self = rt.get()](const std::string& line) { self->log(line); };
  const uint64_t kv_bytes = o.max_kv_mib << 20;
  // Given blocks must fit the memory cap (blocks the node picks are chosen to fit it); without a
  // cap, a range over the memory available is served (the weights are mapped) with a warning.
  const bool given_blocks = o.blocks.has_value();
  const auto check_memory = [&](const ModelFootprint& footprint) -> Result<void> {
    if (!given_blocks) return {};
    if (o.swarm.max_memory_mib > 0) return check_range_fits(footprint, *o.blocks, kv_bytes, o.swarm.max_memory_mib << 20);
    const uint64_t available = available_memory_bytes();
    if (available > 0 && !check_range_fits(footprint, *o.blocks, kv_bytes, available))
      log("warning: blocks " + span_text(*o.blocks) + " need " +
          std::to_string(range_bytes(footprint, *o.blocks, kv_bytes) >> 20) + " MiB with the KV budget, over the " +
          std::to_string(available >> 20) + " MiB of memory available: expect paging");
    return {};
  };
  // The key first (a bad one is reported as such), then one node per identity: a second node on
  // this data directory stops here (AlreadyExists).
  auto identity = net::Identity::load_or_create(data_dir);
  if (!identity) return identity.error();
  rt->identity_ = std::move(*identity);
  auto locked = net::IdentityLock::acquire(data_dir);
  if (!locked) return locked.error();
  rt->identity_lock_.emplace(std::move(*locked));

  // A model CID (and no file of that name) is served from the store; a file as it is.
  struct stat st;
  const bool is_file = ::stat(o.model.c_str(), &st) == 0;
  auto cid = store::Cid::parse(o.model);
  const bool from_store = !is_file && cid.ok();
  if (!is_file && !from_store)
    return Error{ErrorCode::NotFound, "model " + o.model + " is neither a file nor a model CID"};

  // A file's identity is the CID of its content (every shard hashed), kept in the data directory
  // so that only the first start on a file pays for the hashing. Its metadata only (no weights):
  // also its blocks.
  std::unique_ptr<model::Model> probe;
  if (is_file) {
    auto probed = model::Model::load(o.model, model::LoadRange{0, 0, false, false});
    if (!probed) return probed.error();
    probe = std::move(*probed);
    const auto t0 = std::chrono::steady_clock::now();
    bool hashed = false;
    auto cid = store::model_cid_of_file(probe->file(), data_dir, &hashed);
    if (!cid) return cid.error();
    rt->model_identity_ = net::describe_model(*probe, *cid);
    if (o.blocks && o.blocks->end > probe->config().n_layer)
      return blocks_beyond(*o.blocks, probe->config().n_layer, o.model);
    if (auto fits = check_memory(footprint_of(*probe)); !fits) return fits.error();
    if (hashed)
      log("model " + cid->to_string() + " (" + o.model + "): content hashed in " +
          std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()).substr(0, 5) +
          " s, cached in " + data_dir);
  }

  // In a swarm, the node joins the DHT first, and picks its blocks there when none are given. From a
  // model CID it joins once its shards are in (found through the DHT's provider records).
  // What this node has seen of its peers (reputation.h), next to its key: weighs block choice.
  if (o.swarm.joins()) {
    auto reputation = ReputationStore::open(data_dir);
    if (!reputation) return reputation.error();
    if (!(*reputation)->recovered().empty())
      log("reputation store was corrupt, started afresh: " + (*reputation)->recovered());
    o.swarm.reputation = std::move(*reputation);
  }
  std::unique_ptr<DhtDirectory> directory;
  if (o.swarm.joins() && from_store) {
    if (!o.blocks)
      return Error{ErrorCode::InvalidArgument, "a node started from a model CID needs --blocks to join a swarm"};
    auto started = Membership::start_directory(o.swarm);
    if (!started) return started.error();
    directory = std::move(*started);
  } else if (o.swarm.joins()) {
    auto joined = Membership::join(o.swarm, o.model, rt->model_identity_, o.blocks ? span_text(*o.blocks) : "",
                                   kv_bytes, o.node.threads, rt->identity_, log);
    if (!joined) return joined.error();
    prepared->membership = std::move(*joined);
    o.blocks = Span{prepared->membership->block_begin(), prepared->membership->block_end()};
  } else if (!o.blocks) {
    return Error{ErrorCode::InvalidArgument,
                 "--blocks is required (or join a swarm with --bootstrap, which picks the blocks)"};
  }
  net::NodeOptions& node = o.node;
  // Credits: the receipts clients pay this node with, next to its key (survives restarts).
  auto ledger = net::CreditLedger::open(data_dir);
  if (!ledger) return ledger.error();
  node.ledger = std::move(*ledger);
  node.block_begin = o.blocks->begin;
  node.block_end = o.blocks->end;
  node.max_kv_bytes = kv_bytes;
  // Reached only through its relay, every client arrives from the relay's hand-over on loopback:
  // one address for all, so the per-client limits count peer ids alone.
  if (!o.relay.empty() && !o.listen) node.limit_by_address = false;
  if (!o.allow_peers.empty()) {
    auto allowed = net::read_allow_list(o.allow_peers);
    if (!allowed) return allowed.error();
    node.allow_peers = std::move(*allowed);
  }
  if (from_store || o.share) {
    auto opened = store::BlobStore::open(o.store_dir.empty() ? data_dir + "/store" : o.store_dir);
    if (!opened) return opened.error();
    prepared->blobs = std::move(*opened);
  }
  if (from_store) {
    store::BlobStore& blobs = *prepared->blobs;
    const model::LoadRange range{node.block_begin, node.block_end, node.block_begin == 0, false};
    store::Manifest manifest;
    auto have = store::load_manifest(blobs, *cid);
    bool complete = have.ok() && have->model.n_layer >= node.block_end;
    // Shards changed or damaged on disk are removed by verify() and so fetched again like missing
    // ones; without a fetch path the first such failure is the error.
    std::optional<Error> damaged;
    if (complete)
      for (const auto* s : store::shards_for_range(*have, store::shard_range(range)))
        if (auto v = blobs.verify(s->cid); !v) {
          complete = false;
          if (!v.error().is(ErrorCode::NotFound)) {
            log(v.error().message);
            if (!damaged) damaged = v.error();
          }
        }
    if (have && have->model.n_layer < node.block_end) return blocks_beyond(*o.blocks, have->model.n_layer, o.model);
    if (have)  // before fetching shards this node could not hold
      if (auto fits = check_memory(footprint_of(*have)); !fits) return fits.error();
    if (complete) {
      manifest = std::move(*have);
    } else {
      if (o.peers.empty() && !directory) {
        if (damaged) return damaged->with_context("model " + o.model + " (give --peers to fetch the shard again)");
        return Error{ErrorCode::NotFound, "the store lacks shards of model " + o.model + " for blocks " +
                                              span_text(*o.blocks) + "; give --peers to fetch them"};
      }
      const net::PeerFetchOptions fetching{.peers = o.peers,
                                           .data_dir = data_dir,
                                           .timeout_s = o.fetch_timeout_s,
                                           .bandwidth = node.bandwidth,
                                           .log = log,
                                           .progress = o.fetch_progress};
      // --peers when given; else the nodes that announce the model's shards in the swarm.
      auto fetched = !o.peers.empty()
                         ? net::fetch_from_peers(blobs, *cid, store::shard_range(range), fetching)
                         : fetch_from_providers(blobs, *directory, *cid, store::shard_range(range),
                                                ProviderFetchOptions{.fetch = fetching,
                                                                     .self_peer_id = rt->identity_.peer_id(),
                                                                     .lookup_wait_ms = o.fetch_timeout_s * 1000});
      if (!fetched) return fetched.error();
      manifest = std::move(*fetched);
      if (manifest.model.n_layer < node.block_end) return blocks_beyond(*o.blocks, manifest.model.n_layer, o.model);
      if (auto fits = check_memory(footprint_of(manifest)); !fits) return fits.error();
    }
    auto loaded = store::load_model(blobs, *cid, range);
    if (!loaded) return loaded.error();
    // Announce the source file's identity, so this node chains with nodes and clients using the file.
    const net::ModelIdentity id = net::identify_sharded_model(**loaded, manifest);
    node.model_identity = id;
    rt->model_cid_ = *cid;
    if (directory) {
      auto joined = Membership::join(o.swarm, std::move(directory), **loaded, id, span_text(*o.blocks), kv_bytes,
                                     o.node.threads, rt->identity_, log);
      if (!joined) return joined.error();
      prepared->membership = std::move(*joined);
    }
    if (prepared->membership) prepared->membership->provide(cid->to_string(), shards_held(manifest, blobs));
    auto holder = std::make_shared<std::unique_ptr<model::Model>>(std::move(*loaded));
    node.load_model = [holder]() -> Result<std::unique_ptr<model::Model>> {
      if (!*holder) return Error{ErrorCode::Internal, "the model was already handed over"};
      return std::move(*holder);
    };
  } else {
    node.model_path = o.model;
    node.model_identity = rt->model_identity_;
    if (o.share) {
      auto report = store::shard_model(o.model, *prepared->blobs);
      if (!report) return report.error();
      rt->model_cid_ = report->model;
      if (report->model != rt->model_identity_.cid)  // the file changed since it was identified
        return Error{ErrorCode::Unavailable, "model " + o.model + " changed while the node started; start it again"};
      rt->log("sharing model " + report->model.to_string() + " (" + o.model + ")");
      if (prepared->membership)
        prepared->membership->provide(report->model.to_string(), shards_held(report->manifest, *prepared->blobs));
    }
  }
  if (prepared->blobs) {
    prepared->blob_service = std::make_unique<store::BlobService>(*prepared->blobs, log);
    node.blob_service = [service = prepared->blob_service.get()] { return service->client(); };
  }
  if (rt->relay_) {
    auto tls = net::TlsContext::create(rt->identity_);  // the relay learns this node's id from its key
    if (!tls) return tls.error();
    prepared->relay_tls = std::move(*tls);
  }
  auto created = net::NodeServer::create(node, rt->identity_);
  if (!created) return created.error();
  prepared->server = std::move(*created);
  if (node.model_identity) rt->model_identity_ = *node.model_identity;
  rt->blocks_ = *o.blocks;
  // A node that chose its blocks settles its join and may rebalance: both move its blocks.
  rt->rebalances_ = prepared->membership && prepared->membership->chose_blocks() && !from_store;
  rt->prepared_ = std::move(prepared);

  rt->thread_ = std::thread([self = rt.get()] { self->serve_loop(); });
  std::unique_lock lock(rt->mutex_);
  rt->changed_.wait(lock, [&] { return rt->listening_ || rt->finished_; });
  if (!rt->listening_) {
    lock.unlock();
    rt->thread_.join();
    return rt->failure_ ? *rt->failure_ : Error{ErrorCode::Internal, "the node stopped before it listened"};
  }
  return rt;
}

NodeRuntime::~NodeRuntime() {
  stop();
  (void)wait();
}

void NodeRuntime::stop() {
  std::lock_guard lock(mutex_);
  if (stop_requested_) return;  // the fulfiller takes one fulfill()
  stop_requested_ = true;
  if (wake_) wake_();
}

Result<void> NodeRuntime::wait() {
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  if (failure_) return *failure_;
  return {};
}

std::string NodeRuntime::address() const {
  std::lock_guard lock(mutex_);
  return address_;
}

Span NodeRuntime::blocks() const {
  std::lock_guard lock(mutex_);
  return blocks_;
}

void NodeRuntime::serve_loop() {
  auto served = serve();
  // The event loop has ended (and with it the relay's control connection); now the server (its
  // compute thread) and the blob service go.
  prepared_->server.reset();
  prepared_->blob_service.reset();
  std::lock_guard lock(mutex_);
  if (!served) failure_ = served.error();
  finished_ = true;
  changed_.notify_all();
}

Result<void> NodeRuntime::serve() {
  Membership* membership = prepared_->membership.get();
  Prepared* prepared = prepared_.get();
  net::NodeOptions& node = options_.node;
  auto io = kj::setupAsyncIo();
  // stop() wakes the event loop through a cross-thread fulfiller; a stop asked for before this
  // point is seen here.
  auto stop_paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  {
    std::lock_guard lock(mutex_);
    // Through a const pointer: the const fulfill() is the one safe from another thread.
    const kj::CrossThreadPromiseFulfiller<void>* fulfiller = stop_paf.fulfiller.get();
    wake_ = [fulfiller] { fulfiller->fulfill(); };
    if (stop_requested_) wake_();
  }
  auto stop_fork = stop_paf.promise.fork();
  bool stopping = false;

  auto announce = [&](std::vector<std::string> addresses) {
    if (membership)
      if (auto a = membership->announce_addresses(std::move(addresses), node.max_sessions); !a)
        log("announcing to the swarm failed (will retry): " + a.error().message);
  };
  auto endpoint = [&](const std::string& address) {
    return NodeEndpoint{identity_.peer_id(), address, Span{node.block_begin, node.block_end}};
  };
  // With a relay, the relay client starts once the listener (its hand-over point) is bound.
  auto bound = kj::newPromiseAndFulfiller<std::string>();
  std::unique_ptr<net::RelayClient> relay_client;
  std::string relayed_as;
  std::vector<std::string> relay_addresses;  // what the node announced at its last registration
  kj::Promise<void> relaying = kj::NEVER_DONE;
  if (relay_)
    relaying = bound.promise.then([&](std::string listening) {
      net::RelayClientOptions ro;
      ro.relay = *relay_;
      auto local = *net::parse_listen_address(listening);
      if (local.host == "0.0.0.0") local.host = "127.0.0.1";
      if (local.host == "::") local.host = "::1";
      ro.local = local.host_port();
      ro.max_connections = 4 * node.max_sessions;
      ro.log = [this](const std::string& line) { log(line); };
      ro.on_registered = [&, listening](const std::string& address) {
        if (options_.on_relayed) options_.on_relayed(endpoint(address));
        if (address == relayed_as) return;
        relayed_as = address;
        // Relay first: a client takes a node's first address, and the relay's works from anywhere.
        std::vector<std::string> addresses{address.substr(address.find('@') + 1)};
        if (options_.listen) addresses.push_back(membership ? membership->reachable_address(listening) : listening);
        relay_addresses = addresses;
        announce(std::move(addresses));
      };
      relay_client = std::make_unique<net::RelayClient>(*io.provider, prepared->relay_tls, std::move(ro));
      return relay_client->run();
    });
  // The relay client lives across the restarts of the server below (a move of its blocks).
  auto relay_fork = relaying.fork();

  // --upnp: the keeper's thread reports the router's answer through a cross-thread fulfiller; the
  // external address is announced first (it works from anywhere), the listening one after it.
  using Mapped = Result<std::pair<std::string, std::string>>;
  auto mapped_paf = kj::newPromiseAndCrossThreadFulfiller<Mapped>();
  std::string mapped_address;  // the router's "HOST:PORT", once mapped
  std::string listening_address;
  auto with_mapped = [&](const std::string& local) {
    std::vector<std::string> addresses;
    if (!mapped_address.empty()) addresses.push_back(mapped_address);
    addresses.push_back(membership ? membership->reachable_address(local) : local);
    return addresses;
  };
  auto mapped = mapped_paf.promise
                    .then([&](Mapped result) {
                      if (!result) {
                        log("no port mapping on the router (serving without it): " + result.error().message);
                        return;
                      }
                      mapped_address = result->first;
                      if (options_.on_mapped) options_.on_mapped(endpoint(mapped_address), result->second);
                      if (!relay_) announce(with_mapped(listening_address));
                    })
                    .eagerlyEvaluate(nullptr);
  std::unique_ptr<PortMappingKeeper> mapping;  // before the fulfiller goes: its thread uses it

  // --when-idle: a sample a second; the pause outlives a move (applied to each new server).
  std::optional<std::string> paused;
  std::unique_ptr<OwnerActivity> activity;
  if (options_.when_idle)
    activity = std::make_unique<OwnerActivity>(*options_.when_idle,
                                               options_.cpu_source ? options_.cpu_source() : proc_cpu_source());
  std::function<kj::Promise<void>()> watch_owner = [&]() -> kj::Promise<void> {
    return io.provider->getTimer().afterDelay(1 * kj::SECONDS).then([&]() -> kj::Promise<void> {
      auto step = activity->sample(std::chrono::steady_clock::now());
      if (!step) {
        log("--when-idle cannot read the CPU load, serving regardless: " + step.error().message);
        return kj::NEVER_DONE;
      }
      if (step->changed) {
        char why[160];
        std::snprintf(why, sizeof why, "other processes used %.0f %% of the CPU for %u s", step->others * 100,
                      step->busy ? options_.when_idle->busy_for_s : options_.when_idle->idle_for_s);
        paused = step->busy ? std::optional<std::string>("the machine's user is busy (" + std::string(why) + ")")
                            : std::nullopt;
        prepared->server->set_paused(paused);
        log(std::string(step->busy ? "paused: " : "resumed: ") + why);
      }
      return watch_owner();
    });
  };
  auto owner_watch = activity ? watch_owner().eagerlyEvaluate(nullptr) : kj::Promise<void>(kj::NEVER_DONE);

  // Rebalancing: a node that chose its blocks may decide to move them (Membership); the event loop
  // carries a move out once no session is open (waiting at most drain_timeout_s, then giving up
  // this time): the server stops, the new range is loaded and served on the same address, and
  // the record announced again.
  if (rebalances_) membership->start_rebalancing();
  std::string listen = listen_;
  bool bound_once = false;
  std::optional<Error> failure;
  for (;;) {
    net::NodeServer& server = *prepared->server;
    std::optional<Span> moving;
    MoveDrain drain(std::chrono::seconds(options_.drain_timeout_s));
    std::function<kj::Promise<void>()> watch = [&]() -> kj::Promise<void> {
      return io.provider->getTimer().afterDelay(250 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        const auto to = stopping ? std::nullopt : membership->pending_move();
        const uint32_t open = server.active_sessions();
        switch (drain.step(to.has_value(), open, std::chrono::steady_clock::now())) {
          case MoveDrain::Step::kMove:
            moving = to;
            return kj::READY_NOW;
          case MoveDrain::Step::kStartWaiting:
            log("waiting for " + std::to_string(open) + " open session(s) to end before moving to blocks " +
                span_text(*to));
            break;
          case MoveDrain::Step::kGiveUp:
            membership->cancel_move(std::to_string(open) + " session(s) still open after " +
                                    std::to_string(options_.drain_timeout_s) + " s");
            break;
          case MoveDrain::Step::kNone:
          case MoveDrain::Step::kWait:
            break;
        }
        return watch();
      });
    };
    // stop(): no new move; wait for the open sessions to end (at most drain_timeout_s), then stop.
    const auto drain_deadline = std::make_shared<std::chrono::steady_clock::time_point>();
    std::function<kj::Promise<void>()> drain_sessions = [&]() -> kj::Promise<void> {
      if (server.active_sessions() == 0 || std::chrono::steady_clock::now() >= *drain_deadline) return kj::READY_NOW;
      return io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([&] { return drain_sessions(); });
    };
    kj::Promise<void> stop = stop_fork.addBranch().then([&]() -> kj::Promise<void> {
      stopping = true;
      *drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.drain_timeout_s);
      if (const uint32_t open = server.active_sessions())
        log("stopping: waiting for " + std::to_string(open) + " open session(s) to end");
      return drain_sessions();
    });
    stop = stop.exclusiveJoin(relay_fork.addBranch());
    if (rebalances_) stop = stop.exclusiveJoin(watch());
    std::string bound_address;
    auto served = server.serve(
        io, listen,
        [&](const std::string& address) {
          bound_address = address;
          listening_address = address;
          server.set_paused(paused);
          if (!relay_)
            announce(with_mapped(address));
          else if (!relay_addresses.empty())
            announce(relay_addresses);  // after a move: the same addresses, the new blocks
          {
            std::lock_guard lock(mutex_);
            address_ = address;
            blocks_ = Span{node.block_begin, node.block_end};
          }
          if (options_.on_listening) options_.on_listening(endpoint(address));
          if (!bound_once && options_.upnp) {
            const kj::CrossThreadPromiseFulfiller<Mapped>* fulfiller = mapped_paf.fulfiller.get();
            net::PortMappingOptions po;
            po.internal_port = parse_host_port(address)->port;
            mapping = std::make_unique<PortMappingKeeper>(
                po, [fulfiller](Mapped m) { fulfiller->fulfill(std::move(m)); },
                [this](const std::string& line) { log(line); });
          }
          if (!bound_once) {
            bound_once = true;
            bound.fulfiller->fulfill(std::string(address));
            std::lock_guard lock(mutex_);
            listening_ = true;
            changed_.notify_all();
          }
        },
        kj::mv(stop));
    if (!served) {
      failure = served.error();
      break;
    }
    if (stopping || !moving) break;
    const Span from{node.block_begin, node.block_end};
    node.block_begin = moving->begin;
    node.block_end = moving->end;
    auto next = net::NodeServer::create(node, identity_);
    if (next) {
      prepared->server = std::move(*next);
      membership->moved(*moving);
      log("moved from blocks " + span_text(from) + " to " + span_text(*moving));
    } else {
      node.block_begin = from.begin;
      node.block_end = from.end;
      membership->cancel_move("loading blocks " + span_text(*moving) + " failed: " + next.error().message);
    }
    listen = bound_address;  // the same port: clients and the relay keep finding the node there
  }
  // Shutting down: the record is no longer refreshed before the node stops answering.
  {
    std::lock_guard lock(mutex_);
    wake_ = nullptr;
  }
  prepared->membership.reset();
  if (failure) return *failure;
  return {};
}

}  // namespace omni::swarm
