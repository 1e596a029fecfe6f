// omni node: serves a contiguous range of a model's transformer blocks to clients over the node
// protocol (proto/node.capnp, docs/protocol.md). Prints "omni node: peer <id> listening on
// <host:port>" once it accepts connections (tests parse that line), then serves until SIGINT or
// SIGTERM, which stop it cleanly. This file only parses the flags: the node is swarm::NodeRuntime
// (src/swarm/node_runtime.h).
//
// The model is a GGUF file or a model CID (src/store). With a CID the node fetches the manifest and
// exactly the shards its blocks need from --peers (or, in a swarm with --blocks, from the nodes that
// announce them in the DHT) into its store (--store, default <data-dir>/store), verified chunk by
// chunk, then serves them mapped from the store. A node with a store serves its blobs to fetching
// peers over the same TLS transport (feature "blobs"), and in a swarm announces which shards it
// holds (provider records); a node started from a file has a store only with --share, which shards
// the file into it first (a hash pass and a copy of the file on disk, so it is not the default).
//
// With --when-idle the node pauses while the machine's own user is busy (CPU time of other
// processes, /proc/stat; swarm/owner_activity.h) and logs "paused: ..." and "resumed: ...".
//
// With --upnp a node behind a home router asks it to forward its port (UPnP-IGD or NAT-PMP) and
// prints "omni node: peer <id> reachable as <id>@<host:port> (port mapped by <method>)". Off by
// default: a node on a public address or a LAN gains nothing from it, and asking costs up to 4 s
// at start; the package's omni.toml turns it on for volunteers.
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
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/fd_limit.h"
#include "base/parse.h"
#include "cli_options.h"
#include "commands.h"
#include "progress_bar.h"
#include "swarm/membership.h"
#include "swarm/node_runtime.h"

namespace omni::cli {
namespace {

struct NodeCommandOptions {
  swarm::NodeRuntimeOptions runtime;
  std::string blocks;
  std::string listen = "0.0.0.0:7000";
  // Seconds as the command line takes them (decimal); the runtime counts whole seconds.
  double fetch_timeout_s = 60;
  double drain_timeout_s = 30;
  double idle_timeout_s = 300;
  std::string model_sha256;
  uint64_t max_receive_buffer_mib = 512;
  bool when_idle = false;
  swarm::IdlePolicy idle;
  double busy_load_percent = 50;
  uint64_t max_upload = 0;    // bytes/s; 0: no cap
  uint64_t max_download = 0;
};

// SIGINT and SIGTERM stop a serving node cleanly (NodeRuntime::stop); before it serves, or at a
// second signal, they end the process at once. The signals are blocked in every thread and taken
// by one waiting thread, which may call stop() (a signal handler may not).
class StopOnSignal {
 public:
  StopOnSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    waiter_ = std::thread([this] {
      bool stopping = false;
      for (;;) {
        int sig = 0;
        if (sigwait(&signals_, &sig) != 0) continue;
        if (done_) return;
        swarm::NodeRuntime* node = node_.load();
        if (!node || stopping) std::_Exit(128 + sig);
        stopping = true;
        node->stop();
      }
    });
  }
  ~StopOnSignal() { finish(); }
  void serving(swarm::NodeRuntime* node) { node_ = node; }
  // Ends the waiting thread; after this no stop() reaches the node.
  void finish() {
    if (!waiter_.joinable()) return;
    done_ = true;
    pthread_kill(waiter_.native_handle(), SIGTERM);
    waiter_.join();
  }

 private:
  sigset_t signals_;
  std::atomic<swarm::NodeRuntime*> node_{nullptr};
  std::atomic<bool> done_{false};
  std::thread waiter_;
};

int run_node(NodeCommandOptions o, bool listen_given) {
  swarm::NodeRuntimeOptions& r = o.runtime;
  if (r.swarm.bootstrap_only) return swarm::run_bootstrap_node(o.listen, r.swarm);
  if (auto m = resolve_model(r.model, o.model_sha256, store_dir_or_default(r.store_dir, r.data_dir), "node"); !m)
    return fail("node", m.error());
  if (listen_given) r.listen = o.listen;
  if (!o.blocks.empty()) {
    auto blocks = parse_block_range(o.blocks);  // checked at parse time already
    if (!blocks) return fail("node", blocks.error());
    r.blocks = swarm::Span{blocks->begin, blocks->end};
  }
  r.fetch_timeout_s = whole_seconds(o.fetch_timeout_s);
  r.drain_timeout_s = whole_seconds(o.drain_timeout_s);
  r.node.idle_timeout_s = whole_seconds(o.idle_timeout_s);
  r.node.max_receive_buffer_bytes = o.max_receive_buffer_mib << 20;
  if (o.when_idle) {
    o.idle.busy_fraction = o.busy_load_percent / 100;
    r.when_idle = o.idle;
  }
  if (o.max_upload > 0 || o.max_download > 0)
    r.node.bandwidth = std::make_shared<net::Bandwidth>(o.max_upload, o.max_download);
  r.log = [](const std::string& line) { std::fprintf(stderr, "omni node: %s\n", line.c_str()); };
  auto bar = std::make_shared<ProgressBar>();
  r.fetch_progress = [bar](const store::FetchProgress& p, bool done) { bar->update(p, done); };
  r.on_listening = [](const swarm::NodeEndpoint& e) {
    std::printf("omni node: peer %s listening on %s, blocks %u:%u\n", e.peer_id.c_str(), e.address.c_str(),
                e.blocks.begin, e.blocks.end);
    std::fflush(stdout);
  };
  r.on_mapped = [](const swarm::NodeEndpoint& e, const std::string& method) {
    std::printf("omni node: peer %s reachable as %s@%s (port mapped by %s), blocks %u:%u\n", e.peer_id.c_str(),
                e.peer_id.c_str(), e.address.c_str(), method.c_str(), e.blocks.begin, e.blocks.end);
    std::fflush(stdout);
  };
  r.on_relayed = [](const swarm::NodeEndpoint& e) {
    std::printf("omni node: peer %s reachable as %s, blocks %u:%u\n", e.peer_id.c_str(), e.address.c_str(),
                e.blocks.begin, e.blocks.end);
    std::fflush(stdout);
  };
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanishes mid-write is an error on that connection only
  // One descriptor per connection: take all the process may have.
  if (auto files = raise_fd_limit(); !files) std::fprintf(stderr, "omni node: %s\n", files.error().message.c_str());
  StopOnSignal signals;
  auto node = swarm::NodeRuntime::start(std::move(r));
  if (!node) return fail("node", node.error());
  signals.serving(node->get());
  auto served = (*node)->wait();
  signals.finish();
  if (!served) return fail("node", served.error());
  return 0;
}

}  // namespace

void register_node(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<NodeCommandOptions>();
  auto* cmd = app.add_subcommand("node", "Serve a range of a model's blocks to the network");
  cmd->add_option("-m,--model", o->runtime.model, "GGUF model file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV] (fetched once into --store), or a model CID (fetched with --peers, or in a swarm from its providers, into --store)");
  add_model_sha256(cmd, o->model_sha256);
  cmd->add_option("--store", o->runtime.store_dir, "Blob store of the node (default <data-dir>/store)");
  add_peer_list(cmd, "--peers", o->runtime.peers,
                "With a model CID: [ID@]HOST:PORT or ID@relay:HOST:PORT,... of nodes to fetch its shards from");
  cmd->add_flag("--share", o->runtime.share, "With a model file: shard it into the store and serve the shards");
  add_timeout(cmd, "--fetch-timeout", o->fetch_timeout_s, "Seconds before a silent peer is dropped while fetching")
      ->capture_default_str();
  cmd->add_option("--blocks", o->blocks, "Blocks to serve, A:B (A to B-1); in a swarm, chosen when not given")
      ->check(block_range());
  add_host_port_list(cmd, "--bootstrap", o->runtime.swarm.bootstrap, "Join the swarm through these DHT nodes, HOST:PORT (repeatable)");
  cmd->add_flag("--bootstrap-only", o->runtime.swarm.bootstrap_only, "Run only a DHT node (UDP, on --listen) for others to join through");
  cmd->add_option("--dht-port", o->runtime.swarm.dht_port, "UDP port of this node's DHT node (default: any)")->check(count_in(0, 65535));
  cmd->add_flag("--lan", o->runtime.swarm.lan, "Find swarm peers on the LAN by multicast (OpenDHT peer discovery)");
  cmd->add_option("--max-blocks", o->runtime.swarm.max_blocks, "In a swarm without --blocks: take at most this many blocks")
      ->check(count_in(0, UINT32_MAX));
  cmd->add_option("--max-memory-mib", o->runtime.swarm.max_memory_mib, "Memory for weights + KV: given --blocks must fit in it (else the node refuses to start); in a swarm without --blocks, the blocks picked fit in it (default: MemAvailable)")
      ->check(count_in(0));
  cmd->add_option("--announce-host", o->runtime.swarm.announce_host, "Host clients reach this node at (default: the --listen host)");
  cmd->add_option("--announce-interval", o->runtime.swarm.announce_interval_s, "Seconds between record refreshes")
      ->check(count_in(1, 86400))
      ->capture_default_str();
  cmd->add_option("--join-jitter-ms", o->runtime.swarm.join_jitter_ms,
                  "In a swarm without --blocks: wait up to this long (random) before choosing")
      ->check(count_in(0, 600000))
      ->capture_default_str();
  cmd->add_option("--record-ttl", o->runtime.swarm.record_ttl_s, "Seconds a record lives without refresh")
      ->check(count_in(1, 86400))
      ->capture_default_str();
  cmd->add_option("--rebalance-interval", o->runtime.swarm.rebalance_interval_s,
                  "In a swarm without --blocks: seconds between checks whether moving would help the swarm (0: never)")
      ->check(count_in(0, 86400))
      ->capture_default_str();
  cmd->add_option("--rebalance-factor", o->runtime.swarm.rebalance_factor,
                  "Move only when the swarm's weakest block gains more than this factor")
      ->check(number_in(1, 1000))
      ->capture_default_str();
  add_timeout(cmd, "--drain-timeout", o->drain_timeout_s,
              "Seconds a move waits for open sessions to end before it is given up (checked again later), "
              "and a stop before it ends them",
              /*zero_means_off=*/true)
      ->capture_default_str();
  add_host_port(cmd, "--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--relay", o->runtime.relay,
                  "[ID@]HOST:PORT of an `omni relay` to be reachable through (behind NAT); without --listen, "
                  "listen only on loopback for it");
  cmd->add_flag("--when-idle", o->when_idle,
                "Serve only while the machine's user is not busy: pause (no new session, reported full) while "
                "other processes use more than --busy-load of the CPU for --busy-seconds");
  cmd->add_option("--busy-load", o->busy_load_percent, "With --when-idle: percent of all CPU time others may use")
      ->check(number_in(1, 100))
      ->capture_default_str();
  cmd->add_option("--busy-seconds", o->idle.busy_for_s, "With --when-idle: seconds above --busy-load before pausing")
      ->check(count_in(1, 3600))
      ->capture_default_str();
  cmd->add_option("--idle-seconds", o->idle.idle_for_s, "With --when-idle: seconds at or below it before resuming")
      ->check(count_in(1, 86400))
      ->capture_default_str();
  cmd->add_flag("--upnp", o->runtime.upnp,
                "Ask the home router to forward the listening port (UPnP-IGD, else NAT-PMP), renew it while "
                "serving, remove it on exit, and announce the router's address first");
  add_data_dir(cmd, o->runtime.data_dir, "Directory of the node's identity key and credit ledger (default ~/.omni)");
  cmd->add_option("--max-sessions", o->runtime.node.max_sessions, "Sessions open at once")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-sessions-per-client", o->runtime.node.max_sessions_per_client,
                  "Sessions one client (peer id, and separately source address) may hold (default: half of "
                  "--max-sessions, rounded up)")
      ->check(count_in(1, 1000000));
  cmd->add_option("--max-sinks-per-client", o->runtime.node.max_sinks_per_client,
                  "Ring output sinks one client may have waiting for their session (default: "
                  "--max-sessions-per-client)")
      ->check(count_in(1, 1000000));
  cmd->add_option("--max-queued-tokens-per-client", o->runtime.node.max_queued_tokens_per_client,
                  "Tokens of one client's calls that may wait for compute (default: 4 x the batch size, 2048)")
      ->check(count_in(1));
  cmd->add_option("--compute-slice", o->runtime.node.compute_slice_tokens,
                  "Tokens of a call computed before other clients' calls may run (bigger calls are split, "
                  "with the same results)")
      ->check(count_in(2, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o->runtime.node.max_pass_tokens,
                  "Tokens of one compute pass: calls of different sessions waiting for the node are merged "
                  "into its next pass up to this many (1: no merging; each call still runs in --compute-slice "
                  "slices)")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-kv-mib", o->runtime.max_kv_mib, "KV cache budget over all sessions, MiB")
      ->check(count_in(1))
      ->capture_default_str();
  cmd->add_option("--max-length", o->runtime.node.max_length, "Positions per session (default: training context)")
      ->check(count_in(0, UINT32_MAX));
  add_timeout(cmd, "--idle-timeout", o->idle_timeout_s, "Free sessions idle this many seconds")->capture_default_str();
  cmd->add_option("--connection-idle-timeout", o->runtime.node.connection_idle_timeout_s,
                  "Close a connection holding no session after this many seconds without a message")
      ->check(count_in(1, 86400))
      ->capture_default_str();
  cmd->add_option("--hello-timeout", o->runtime.node.hello_timeout_s,
                  "Seconds a connection has for TLS and then for hello; "
                  "a message that stops arriving this long ends it")
      ->check(count_in(1, 3600))
      ->capture_default_str();
  cmd->add_option("--fast-hop-failures", o->runtime.node.fast_hop_failures_per_minute,
                  "Unreachable next hops answered at once per minute; beyond, each waits the connect timeout "
                  "(so the node is no fast port scanner)")
      ->check(count_in(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-connections", o->runtime.node.max_connections, "Connections open at once")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-connections-per-ip", o->runtime.node.max_connections_per_source,
                  "Connections open at once from one address (IPv6: one /64)")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-receive-buffer-mib", o->max_receive_buffer_mib,
                  "Memory for incoming messages over all connections, MiB (at least 128)")
      ->check(count_in(128, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-receipts-per-minute", o->runtime.node.max_receipts_per_minute,
                  "Work receipts one client (peer id, and separately source address) may hand over a minute; "
                  "they are kept in <data dir>/credits.sqlite (omni credits)")
      ->check(count_in(1, 1000000))
      ->capture_default_str();
  add_threads(cmd, o->runtime.node.threads);
  cmd->add_option("--max-upload", o->max_upload,
                  "Bytes/s this node sends over all its connections (k, M, G, Ki, Mi, Gi suffixes; 0: no cap)")
      ->transform(byte_amount())
      ->capture_default_str();
  cmd->add_option("--max-download", o->max_download,
                  "Bytes/s this node receives over all its connections, shard fetches included (0: no cap)")
      ->transform(byte_amount())
      ->capture_default_str();
  cmd->add_option("--allow-peers", o->runtime.allow_peers, "File of client peer ids (one a line) allowed to connect");
  cmd->callback([o, cmd, &exit_code] { exit_code = run_node(*o, cmd->count("--listen") > 0); });
}

}  // namespace omni::cli
