// omni fetch CID --peers HOST:PORT,... --store DIR: fetches a sharded model (or a block range of it)
// from several peers at once, verifying every chunk, with a progress bar on stderr.
// omni serve-blobs --store DIR --listen ADDR: serves a store's blobs to fetching peers.
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "commands.h"
#include "store/fetch.h"
#include "store/service.h"
#include "store/shard.h"

namespace omni::cli {
namespace {

struct FetchCliOptions {
  std::string cid;
  std::string peers;
  std::string store_dir;
  std::string blocks;  // "a:b"
  bool no_embeddings = false, no_head = false;
  uint32_t window = 8;
  uint64_t limit_mib = 0;
  uint32_t timeout_s = 60;
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

int run_fetch(const FetchCliOptions& o) {
  auto cid = store::Cid::parse(o.cid);
  if (!cid) return fail("fetch", cid.error().message);
  model::LoadRange range;
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
  std::vector<std::shared_ptr<store::ChunkSource>> peers;
  std::stringstream list(o.peers);
  for (std::string addr; std::getline(list, addr, ',');) {
    if (addr.empty()) continue;
    auto p = store::connect_peer(addr);
    if (!p) {
      std::fprintf(stderr, "omni fetch: skipping peer %s\n", p.error().message.c_str());
      continue;
    }
    peers.push_back(std::move(*p));
  }
  if (peers.empty()) return fail("fetch", "no reachable peer in --peers '" + o.peers + "'");
  ProgressBar bar(::isatty(STDERR_FILENO));
  store::FetchProgress last;
  store::Fetcher f(**st, peers,
                   {.window = o.window,
                    .request_timeout_ms = o.timeout_s * 1000,
                    .progress = [&](const store::FetchProgress& p) {
                      last = p;
                      bar.update(p);
                    }});
  auto t0 = std::chrono::steady_clock::now();
  auto m = f.fetch_model(*cid, range);
  bar.update(last, true);
  bar.end();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& d : f.stats().dropped) std::fprintf(stderr, "omni fetch: dropped peer %s\n", d.c_str());
  if (!m) return fail("fetch", m.error().message);
  const auto& s = f.stats();
  std::fprintf(stderr,
               "fetched %" PRIu64 " chunks (%.1f MiB) in %.2f s, %.1f MiB/s; %" PRIu64 " chunks resumed, %" PRIu64
               " requests, %" PRIu64 " bad chunks\n",
               s.chunks_fetched, static_cast<double>(s.bytes_fetched) / (1 << 20), secs,
               secs > 0 ? static_cast<double>(s.bytes_fetched) / secs / (1 << 20) : 0.0, s.chunks_resumed, s.requests,
               s.bad_chunks);
  std::printf("%s\n", o.cid.c_str());
  return 0;
}

volatile std::sig_atomic_t g_stop = 0;

int run_serve(const std::string& store_dir, const std::string& listen) {
  auto st = store::BlobStore::open(store_dir);
  if (!st) return fail("serve-blobs", st.error().message);
  auto server = store::BlobServer::start(**st, listen);
  if (!server) return fail("serve-blobs", server.error().message);
  std::printf("%u\n", (*server)->port());  // the port, for scripts that listen on :0
  std::fflush(stdout);
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "omni serve-blobs: served %" PRIu64 " reads\n", (*server)->reads_served());
  return 0;
}

}  // namespace

void register_fetch(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<FetchCliOptions>();
  auto* cmd = app.add_subcommand("fetch", "Fetch a sharded model from peers into a store");
  cmd->add_option("cid", o->cid, "Model CID (the manifest's)")->required();
  cmd->add_option("--peers", o->peers, "Comma-separated HOST:PORT of peers serving blobs")->required();
  cmd->add_option("--store", o->store_dir, "Store directory")->required();
  cmd->add_option("--blocks", o->blocks, "Only blocks [A, B): A:B");
  cmd->add_flag("--no-embeddings", o->no_embeddings, "Skip the embeddings shard");
  cmd->add_flag("--no-head", o->no_head, "Skip the head shard");
  cmd->add_option("--window", o->window, "Requests in flight per peer")->capture_default_str();
  cmd->add_option("--limit-mib", o->limit_mib, "Store size limit in MiB (0 = none)");
  cmd->add_option("--timeout", o->timeout_s, "Seconds before a silent peer is dropped")->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run_fetch(*o); });

  auto dir = std::make_shared<std::string>();
  auto listen = std::make_shared<std::string>("0.0.0.0:0");
  auto* serve = app.add_subcommand("serve-blobs", "Serve a store's blobs to fetching peers (plain TCP, interim)");
  serve->add_option("--store", *dir, "Store directory")->required();
  serve->add_option("--listen", *listen, "Address to listen on (port 0 = any; the port is printed)")->capture_default_str();
  serve->callback([dir, listen, &exit_code] { exit_code = run_serve(*dir, *listen); });
}

}  // namespace omni::cli
