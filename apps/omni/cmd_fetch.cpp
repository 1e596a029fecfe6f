// omni fetch CID --peers [ID@]HOST:PORT,... --store DIR: fetches a sharded model (or a block range of
// it) from several nodes at once over the node transport (TLS 1.3, peer ids checked), verifying
// every chunk, with a progress bar on stderr. Nodes serve the blobs of their store (omni node); a
// node behind NAT is reached through its relay as ID@relay:HOST:PORT (TLS end to end).
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

#include "commands.h"
#include "fetch_peers.h"
#include "net/blob_peer.h"
#include "net/identity.h"
#include "net/peer_address.h"
#include "net/tls.h"
#include "store/fetch.h"
#include "store/shard.h"

namespace omni::cli {
namespace {

struct FetchCliOptions {
  std::string cid;
  std::string peers;
  std::string store_dir;
  std::string blocks;  // "a:b"
  bool no_embeddings = false, no_head = false;
  uint32_t window = 16;
  uint64_t limit_mib = 0;
  uint32_t timeout_s = 60;
  std::string data_dir;
};

int fail(const char* cmd, const std::string& message) {
  std::fprintf(stderr, "omni %s: %s\n", cmd, message.c_str());
  return 1;
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), start_(std::chrono::steady_clock::now()) {}
  void update(const store::FetchProgress& p, bool force = false) {
    auto now = std::chrono::steady_clock::now();
    if (!enabled_ || (!force && now - last_ < std::chrono::milliseconds(100))) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double frac = p.total_bytes ? static_cast<double>(p.done_bytes) / static_cast<double>(p.total_bytes) : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>', bar += std::string(static_cast<size_t>(width - filled - 1), ' ');
    const double rate = secs > 0 ? static_cast<double>(p.done_bytes - p.resumed_bytes) / secs / (1 << 20) : 0;
    std::fprintf(stderr, "\r[%s] %5.1f%% %7.1f/%.1f MiB %6.1f MiB/s %u peers  %-12s", bar.c_str(), frac * 100,
                 static_cast<double>(p.done_bytes) / (1 << 20), static_cast<double>(p.total_bytes) / (1 << 20), rate,
                 p.active_peers, p.blob.c_str());
    std::fflush(stderr);
  }
  void end() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace

Result<store::Manifest> fetch_from_peers(store::BlobStore& store, const store::Cid& model,
                                         const store::ShardRange& range, const PeerFetchOptions& o) {
  auto addresses = net::parse_peer_list(o.peers);
  if (!addresses) return addresses.error();
  auto identity = o.data_dir.empty() ? net::Identity::generate() : net::Identity::load_or_create(o.data_dir);
  if (!identity) return identity.error();
  auto tls = net::TlsContext::create(*identity);
  if (!tls) return tls.error();
  std::vector<std::shared_ptr<store::ChunkSource>> peers;
  for (const auto& address : *addresses) {
    std::string seen;
    auto p = net::connect_blob_peer(address, *tls, o.timeout_s, &seen);
    if (!p) {
      std::fprintf(stderr, "omni %s: skipping peer %s\n", o.command, p.error().message.c_str());
      continue;
    }
    if (address.peer_id.empty())
      std::fprintf(stderr, "omni %s: peer %s presented id %s (pin it with %s@%s)\n", o.command,
                   address.host_port().c_str(), seen.c_str(), seen.c_str(), address.host_port().c_str());
    peers.push_back(std::move(*p));
  }
  if (peers.empty()) return Error{"no reachable peer in --peers '" + o.peers + "'"};
  ProgressBar bar(::isatty(STDERR_FILENO));
  store::FetchProgress last;
  store::Fetcher f(store, peers,
                   {.window = o.window,
                    .request_timeout_ms = o.timeout_s * 1000,
                    .progress = [&](const store::FetchProgress& p) {
                      last = p;
                      bar.update(p);
                    }});
  auto t0 = std::chrono::steady_clock::now();
  auto m = f.fetch_model(model, range);
  bar.update(last, true);
  bar.end();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& d : f.stats().dropped) std::fprintf(stderr, "omni %s: dropped peer %s\n", o.command, d.c_str());
  const auto& s = f.stats();
  std::fprintf(stderr,
               "omni %s: fetched %" PRIu64 " chunks (%.1f MiB) in %.2f s, %.1f MiB/s; %" PRIu64
               " chunks resumed, %" PRIu64 " requests, %" PRIu64 " bad chunks\n",
               o.command, s.chunks_fetched, static_cast<double>(s.bytes_fetched) / (1 << 20), secs,
               secs > 0 ? static_cast<double>(s.bytes_fetched) / secs / (1 << 20) : 0.0, s.chunks_resumed, s.requests,
               s.bad_chunks);
  return m;
}

namespace {

int run_fetch(const FetchCliOptions& o) {
  auto cid = store::Cid::parse(o.cid);
  if (!cid) return fail("fetch", cid.error().message);
  store::ShardRange range;
  if (!o.blocks.empty()) {
    unsigned a = 0, b = 0;
    char colon = 0;
    std::istringstream in(o.blocks);
    if (!(in >> a >> colon >> b) || colon != ':' || a > b || !in.eof())
      return fail("fetch", "--blocks takes A:B (blocks [A, B)), got '" + o.blocks + "'");
    range.block_begin = a;
    range.block_end = b;
  }
  range.embeddings = !o.no_embeddings;
  range.head = !o.no_head;
  auto st = store::BlobStore::open(o.store_dir, {.limit_bytes = o.limit_mib << 20});
  if (!st) return fail("fetch", st.error().message);
  // A peer that vanishes mid-write must be an error on that connection, not the end of the fetch.
  std::signal(SIGPIPE, SIG_IGN);
  auto m = fetch_from_peers(**st, *cid, range,
                            {.peers = o.peers, .data_dir = o.data_dir, .window = o.window, .timeout_s = o.timeout_s});
  if (!m) return fail("fetch", m.error().message);
  std::printf("%s\n", o.cid.c_str());
  return 0;
}

}  // namespace

void register_fetch(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<FetchCliOptions>();
  auto* cmd = app.add_subcommand("fetch", "Fetch a sharded model from peers into a store");
  cmd->add_option("cid", o->cid, "Model CID (the manifest's)")->required();
  cmd->add_option("--peers", o->peers,
                  "Comma-separated [ID@]HOST:PORT (or ID@relay:HOST:PORT) of nodes serving blobs (omni node)")
      ->required();
  cmd->add_option("--data-dir", o->data_dir, "Directory of this side's identity key (default: a throwaway key)");
  cmd->add_option("--store", o->store_dir, "Store directory")->required();
  cmd->add_option("--blocks", o->blocks, "Only blocks [A, B): A:B");
  cmd->add_flag("--no-embeddings", o->no_embeddings, "Skip the embeddings shard");
  cmd->add_flag("--no-head", o->no_head, "Skip the head shard");
  cmd->add_option("--window", o->window, "Requests in flight per peer")->capture_default_str();
  cmd->add_option("--limit-mib", o->limit_mib, "Store size limit in MiB (0 = none)");
  cmd->add_option("--timeout", o->timeout_s, "Seconds before a silent peer is dropped")->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run_fetch(*o); });
}

}  // namespace omni::cli
