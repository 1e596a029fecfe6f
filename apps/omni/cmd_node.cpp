// omni node: serves a contiguous range of a model's transformer blocks to clients over the node
// protocol (proto/node.capnp, docs/protocol.md). Prints "omni node: peer <id> listening on
// <host:port>" once it accepts connections (tests parse that line), then serves until killed.
//
// The model is a GGUF file or a model CID (src/store). With a CID the node fetches the manifest and
// exactly the shards its blocks need from --peers into its store (--store, default
// <data-dir>/store), verified chunk by chunk, then serves them mapped from the store. A node with a
// store serves its blobs to fetching peers over the same TLS transport (feature "blobs"); a node
// started from a file has a store only with --share, which shards the file into it first (a hash
// pass and a copy of the file on disk, so it is not the default).
//
// With --relay HOST:PORT a node behind NAT is served through a relay (`omni relay`): it keeps a
// control connection to it, prints "omni node: peer <id> reachable as <id>@relay:HOST:PORT" at
// each (re)registration, and announces that address to the swarm. Without --listen it then listens
// only on a loopback port, where the relay's connections are handed to it.
//
// A swarm node that chose its own blocks (--bootstrap, no --blocks) re-checks the swarm's coverage
// every --rebalance-interval s and moves its range when that lifts the swarm's weakest block
// (src/swarm/assignment.h, consider_move): once no session is open it loads the new range, prints
// "omni node: moved from blocks A:B to C:D" and the "listening on" line again (same address), and
// announces the new range.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <kj/async-io.h>
#include <functional>
#include <optional>

#include "commands.h"
#include "net/identity.h"
#include "net/node_info.h"
#include "net/node_server.h"
#include "net/peer_fetch.h"
#include "net/relay_client.h"
#include "progress_bar.h"
#include "store/service.h"
#include "store/shard.h"
#include "store/sharded_model.h"
#include "swarm/move_drain.h"
#include "swarm/membership.h"

namespace omni::cli {
namespace {

struct NodeCommandOptions {
  net::NodeOptions node;
  std::string blocks;
  std::string listen = "0.0.0.0:7000";
  bool listen_given = false;  // --listen on the command line (with --relay: also serve directly)
  std::string relay;          // [ID@]HOST:PORT of a relay to serve through
  std::string data_dir;
  std::string allow_peers;
  uint64_t max_kv_mib = 2048;
  std::string model;      // a GGUF file or a model CID
  std::string store_dir;  // default <data-dir>/store
  std::string peers;      // where to fetch a model CID from
  bool share = false;     // shard a model file into the store and serve it
  uint32_t fetch_timeout_s = 60;
  uint32_t drain_timeout_s = 30;  // before a move: how long to wait for open sessions to end
  swarm::JoinOptions swarm;  // --bootstrap, --lan, --bootstrap-only (src/swarm)
};

int node_fail(const std::string& message) {
  std::fprintf(stderr, "omni node: %s\n", message.c_str());
  return 1;
}

Result<std::pair<uint32_t, uint32_t>> parse_blocks(const std::string& text) {
  unsigned a = 0, b = 0;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%u:%u%c", &a, &b, &tail) != 2 || a >= b)
    return Error{"--blocks '" + text + "' is not A:B with A < B (blocks A to B-1)"};
  return std::make_pair(static_cast<uint32_t>(a), static_cast<uint32_t>(b));
}

int run_node(NodeCommandOptions o) {
  if (o.swarm.bootstrap_only) return swarm::run_bootstrap_node(o.listen, o.swarm);
  if (o.model.empty()) return node_fail("--model is required");
  std::optional<net::PeerAddress> relay;
  if (!o.relay.empty()) {
    auto r = net::parse_peer_address(o.relay);
    if (!r || r->relayed) return node_fail("--relay '" + o.relay + "' is not [ID@]HOST:PORT of a relay");
    relay = *r;
    if (!o.listen_given) o.listen = "127.0.0.1:0";  // only the relay's connections, handed over locally
  }
  if (auto l = net::parse_listen_address(o.listen); !l || l->relayed)
    return node_fail("--listen '" + o.listen + "' is not HOST:PORT");
  // In a swarm, the node joins the DHT first, and picks its blocks there when --blocks is not given.
  std::unique_ptr<swarm::Membership> membership;
  if (o.swarm.joins()) {
    auto joined = swarm::Membership::join(o.swarm, o.model, o.blocks, o.max_kv_mib << 20, o.node.threads,
                                          o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir,
                                          [](const std::string& line) { std::fprintf(stderr, "omni node: %s\n", line.c_str()); });
    if (!joined) return node_fail(joined.error().message);
    membership = std::move(*joined);
    o.blocks = std::to_string(membership->block_begin()) + ":" + std::to_string(membership->block_end());
  } else if (o.blocks.empty()) {
    return node_fail("--blocks is required (or join a swarm with --bootstrap, which picks the blocks)");
  }
  auto blocks = parse_blocks(o.blocks);
  if (!blocks) return node_fail(blocks.error().message);
  o.node.block_begin = blocks->first;
  o.node.block_end = blocks->second;
  o.node.max_kv_bytes = o.max_kv_mib << 20;
  if (!o.allow_peers.empty()) {
    auto allowed = net::read_allow_list(o.allow_peers);
    if (!allowed) return node_fail(allowed.error().message);
    o.node.allow_peers = std::move(*allowed);
  }
  const std::string data_dir = o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir;
  auto identity = net::Identity::load_or_create(data_dir);
  if (!identity) return node_fail(identity.error().message);

  // A model CID (and no file of that name) is fetched; a file is served as it is.
  struct stat st;
  auto cid = store::Cid::parse(o.model);
  const bool from_store = cid.ok() && ::stat(o.model.c_str(), &st) != 0;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<store::BlobService> blob_service;
  if (from_store || o.share) {
    auto opened = store::BlobStore::open(o.store_dir.empty() ? data_dir + "/store" : o.store_dir);
    if (!opened) return node_fail(opened.error().message);
    blobs = std::move(*opened);
  }
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanishes mid-write is an error on that connection only
  if (from_store) {
    const model::LoadRange range{o.node.block_begin, o.node.block_end, o.node.block_begin == 0, false};
    store::Manifest manifest;
    auto have = store::load_manifest(*blobs, *cid);
    bool complete = have.ok();
    if (complete)
      for (const auto* s : store::shards_for_range(*have, store::shard_range(range))) complete = complete && blobs->has(s->cid);
    if (complete) {
      manifest = std::move(*have);
    } else {
      if (o.peers.empty())
        return node_fail("the store lacks shards of model " + o.model + " for blocks " + o.blocks +
                         "; give --peers to fetch them");
      ProgressBar bar;
      auto fetched = net::fetch_from_peers(
          *blobs, *cid, store::shard_range(range),
          {.peers = o.peers,
           .data_dir = data_dir,
           .timeout_s = o.fetch_timeout_s,
           .log = [](const std::string& line) { std::fprintf(stderr, "omni node: %s\n", line.c_str()); },
           .progress = [&bar](const store::FetchProgress& p, bool done) { bar.update(p, done); }});
      if (!fetched) return node_fail(fetched.error().message);
      manifest = std::move(*fetched);
    }
    auto loaded = store::load_model(*blobs, *cid, range);
    if (!loaded) return node_fail(loaded.error().message);
    // Announce the source file's identity, so this node chains with nodes and clients using the file.
    net::ModelIdentity id = net::identify_model(**loaded);
    if (manifest.model.source_header_sha256.size() == 32) {
      id.file_size = manifest.model.source_size;
      id.header_sha256.assign(manifest.model.source_header_sha256.begin(), manifest.model.source_header_sha256.end());
    }
    // A range without the embeddings shard does not see token_embd's shape; the manifest has it.
    if (manifest.model.n_vocab != 0) id.n_vocab = manifest.model.n_vocab;
    o.node.model_identity = id;
    auto holder = std::make_shared<std::unique_ptr<model::Model>>(std::move(*loaded));
    o.node.load_model = [holder]() -> Result<std::unique_ptr<model::Model>> {
      if (!*holder) return Error{"the model was already handed over"};
      return std::move(*holder);
    };
  } else {
    o.node.model_path = o.model;
    if (o.share) {
      auto report = store::shard_model(o.model, *blobs);
      if (!report) return node_fail(report.error().message);
      std::fprintf(stderr, "omni node: sharing model %s (%s)\n", report->model.to_string().c_str(), o.model.c_str());
    }
  }
  if (blobs) {
    blob_service = std::make_unique<store::BlobService>(*blobs);
    o.node.blob_service = [service = blob_service.get()] { return service->client(); };
  }
  std::shared_ptr<net::TlsContext> relay_tls;
  if (relay) {
    auto tls = net::TlsContext::create(*identity);  // the relay learns this node's id from its key
    if (!tls) return node_fail(tls.error().message);
    relay_tls = std::move(*tls);
  }
  const net::Identity node_identity = *identity;
  auto created = net::NodeServer::create(o.node, node_identity);
  if (!created) return node_fail(created.error().message);
  std::unique_ptr<net::NodeServer> server = std::move(*created);
  auto io = kj::setupAsyncIo();
  auto announce = [&](std::vector<std::string> addresses) {
    if (membership)
      if (auto a = membership->announce_addresses(std::move(addresses), o.node.max_sessions); !a)
        std::fprintf(stderr, "omni node: announcing to the swarm failed (will retry): %s\n", a.error().message.c_str());
  };
  // With a relay, the relay client starts once the listener (its hand-over point) is bound.
  auto bound = kj::newPromiseAndFulfiller<std::string>();
  std::unique_ptr<net::RelayClient> relay_client;
  std::string relayed_as;
  std::vector<std::string> relay_addresses;  // what the node announced at its last registration
  kj::Promise<void> relaying = kj::NEVER_DONE;
  if (relay)
    relaying = bound.promise.then([&](std::string listening) {
      net::RelayClientOptions ro;
      ro.relay = *relay;
      auto local = *net::parse_listen_address(listening);
      if (local.host == "0.0.0.0") local.host = "127.0.0.1";
      if (local.host == "::") local.host = "::1";
      ro.local = local.host_port();
      ro.max_connections = 4 * o.node.max_sessions;
      ro.log = [](const std::string& line) { std::fprintf(stderr, "omni node: %s\n", line.c_str()); };
      ro.on_registered = [&, listening](const std::string& address) {
        std::printf("omni node: peer %s reachable as %s, blocks %u:%u\n", server->peer_id().c_str(),
                    address.c_str(), o.node.block_begin, o.node.block_end);
        std::fflush(stdout);
        if (address == relayed_as) return;
        relayed_as = address;
        // Relay first: a client takes a node's first address, and the relay's works from anywhere.
        std::vector<std::string> addresses{address.substr(address.find('@') + 1)};
        if (o.listen_given) addresses.push_back(membership ? membership->reachable_address(listening) : listening);
        relay_addresses = addresses;
        announce(std::move(addresses));
      };
      relay_client = std::make_unique<net::RelayClient>(*io.provider, relay_tls, std::move(ro));
      return relay_client->run();
    });
  // The relay client lives across the restarts of the server below (a move of its blocks).
  auto relay_fork = relaying.fork();

  // Rebalancing: a node that chose its blocks may decide to move them (Membership); the event loop
  // carries a move out once no session is open (waiting at most --drain-timeout, then giving up
  // this time): the server stops, the new range is loaded and served on the same address, and
  // the record announced again.
  const bool rebalances = membership && membership->chose_blocks() && o.swarm.rebalance_interval_s > 0 && !from_store;
  if (rebalances) membership->start_rebalancing();
  std::string listen = o.listen;
  bool bound_once = false;
  for (;;) {
    std::optional<swarm::Span> moving;
    swarm::MoveDrain drain(std::chrono::seconds(o.drain_timeout_s));
    std::function<kj::Promise<void>()> watch = [&]() -> kj::Promise<void> {
      return io.provider->getTimer().afterDelay(250 * kj::MILLISECONDS).then([&]() -> kj::Promise<void> {
        const auto to = membership->pending_move();
        const uint32_t open = server->active_sessions();
        switch (drain.step(to.has_value(), open, std::chrono::steady_clock::now())) {
          case swarm::MoveDrain::Step::kMove:
            moving = to;
            return kj::READY_NOW;
          case swarm::MoveDrain::Step::kStartWaiting:
            std::fprintf(stderr, "omni node: waiting for %u open session(s) to end before moving to blocks %u:%u\n",
                         open, to->begin, to->end);
            break;
          case swarm::MoveDrain::Step::kGiveUp:
            membership->cancel_move(std::to_string(open) + " session(s) still open after " +
                                    std::to_string(o.drain_timeout_s) + " s");
            break;
          case swarm::MoveDrain::Step::kNone:
          case swarm::MoveDrain::Step::kWait:
            break;
        }
        return watch();
      });
    };
    kj::Promise<void> stop = relay_fork.addBranch();
    if (rebalances) stop = stop.exclusiveJoin(watch());
    std::string bound_address;
    auto served = server->serve(
        io, listen,
        [&](const std::string& address) {
          bound_address = address;
          if (!relay)
            announce({membership ? membership->reachable_address(address) : address});
          else if (!relay_addresses.empty())
            announce(relay_addresses);  // after a move: the same addresses, the new blocks
          std::printf("omni node: peer %s listening on %s, blocks %u:%u\n", server->peer_id().c_str(),
                      address.c_str(), o.node.block_begin, o.node.block_end);
          std::fflush(stdout);
          if (!bound_once) {
            bound_once = true;
            bound.fulfiller->fulfill(std::string(address));
          }
        },
        kj::mv(stop));
    if (!served) return node_fail(served.error().message);
    if (!moving) return 0;
    const uint32_t old_begin = o.node.block_begin, old_end = o.node.block_end;
    o.node.block_begin = moving->begin;
    o.node.block_end = moving->end;
    auto next = net::NodeServer::create(o.node, node_identity);
    if (next) {
      server = std::move(*next);
      membership->moved(*moving);
      std::fprintf(stderr, "omni node: moved from blocks %u:%u to %u:%u\n", old_begin, old_end, moving->begin,
                   moving->end);
    } else {
      o.node.block_begin = old_begin;
      o.node.block_end = old_end;
      membership->cancel_move("loading blocks " + std::to_string(moving->begin) + ":" + std::to_string(moving->end) +
                              " failed: " + next.error().message);
    }
    listen = bound_address;  // the same port: clients and the relay keep finding the node there
  }
}

}  // namespace

void register_node(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<NodeCommandOptions>();
  auto* cmd = app.add_subcommand("node", "Serve a range of a model's blocks to the network");
  cmd->add_option("-m,--model", o->model, "GGUF model file, or a model CID (fetched with --peers into --store)");
  cmd->add_option("--store", o->store_dir, "Blob store of the node (default <data-dir>/store)");
  cmd->add_option("--peers", o->peers, "With a model CID: [ID@]HOST:PORT or ID@relay:HOST:PORT,... of nodes to fetch its shards from");
  cmd->add_flag("--share", o->share, "With a model file: shard it into the store and serve the shards");
  cmd->add_option("--fetch-timeout", o->fetch_timeout_s, "Seconds before a silent peer is dropped while fetching")
      ->capture_default_str();
  cmd->add_option("--blocks", o->blocks, "Blocks to serve, A:B (A to B-1); in a swarm, chosen when not given");
  cmd->add_option("--bootstrap", o->swarm.bootstrap, "Join the swarm through these DHT nodes, HOST:PORT (repeatable)")
      ->delimiter(',');
  cmd->add_flag("--bootstrap-only", o->swarm.bootstrap_only, "Run only a DHT node (UDP, on --listen) for others to join through");
  cmd->add_option("--dht-port", o->swarm.dht_port, "UDP port of this node's DHT node (default: any)");
  cmd->add_flag("--lan", o->swarm.lan, "Find swarm peers on the LAN by multicast (OpenDHT peer discovery)");
  cmd->add_option("--max-blocks", o->swarm.max_blocks, "In a swarm without --blocks: take at most this many blocks");
  cmd->add_option("--max-memory-mib", o->swarm.max_memory_mib, "In a swarm without --blocks: memory for weights + KV (default: MemAvailable)");
  cmd->add_option("--announce-host", o->swarm.announce_host, "Host clients reach this node at (default: the --listen host)");
  cmd->add_option("--announce-interval", o->swarm.announce_interval_s, "Seconds between record refreshes")->capture_default_str();
  cmd->add_option("--record-ttl", o->swarm.record_ttl_s, "Seconds a record lives without refresh")->capture_default_str();
  cmd->add_option("--rebalance-interval", o->swarm.rebalance_interval_s,
                  "In a swarm without --blocks: seconds between checks whether moving would help the swarm (0: never)")
      ->capture_default_str();
  cmd->add_option("--rebalance-factor", o->swarm.rebalance_factor,
                  "Move only when the swarm's weakest block gains more than this factor")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", o->drain_timeout_s,
                  "Seconds a move waits for open sessions to end before it is given up (checked again later)")
      ->capture_default_str();
  cmd->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--relay", o->relay,
                  "[ID@]HOST:PORT of an `omni relay` to be reachable through (behind NAT); without --listen, "
                  "listen only on loopback for it");
  cmd->add_option("--data-dir", o->data_dir, "Directory of the node's identity key (default ~/.omni)");
  cmd->add_option("--max-sessions", o->node.max_sessions, "Sessions open at once")->capture_default_str();
  cmd->add_option("--max-kv-mib", o->max_kv_mib, "KV cache budget over all sessions, MiB")->capture_default_str();
  cmd->add_option("--max-length", o->node.max_length, "Positions per session (default: training context)");
  cmd->add_option("--idle-timeout", o->node.idle_timeout_s, "Free sessions idle this many seconds")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->node.threads, "Compute threads (default: all cores)");
  cmd->add_option("--allow-peers", o->allow_peers, "File of client peer ids (one a line) allowed to connect");
  cmd->callback([o, cmd, &exit_code] {
    o->listen_given = cmd->count("--listen") > 0;
    exit_code = run_node(*o);
  });
}

}  // namespace omni::cli
