// omni fetch CID --peers [ID@]HOST:PORT,... --store DIR: fetches a sharded model (or a block range of
// it) from several nodes at once over the node transport (TLS 1.3, peer ids checked), verifying
// every chunk, with a progress bar on stderr. Nodes serve the blobs of their store (omni node); a
// node behind NAT is reached through its relay as ID@relay:HOST:PORT (TLS end to end).
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "base/parse.h"
#include "cli_options.h"
#include "commands.h"
#include "net/peer_fetch.h"
#include "progress_bar.h"
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

int run_fetch(const FetchCliOptions& o) {
  auto cid = store::Cid::parse(o.cid);
  if (!cid) return fail("fetch", cid.error());
  store::ShardRange range;
  if (!o.blocks.empty()) {
    auto blocks = parse_block_range(o.blocks, /*allow_empty=*/true);  // checked at parse time already
    if (!blocks) return fail("fetch", blocks.error());
    range.block_begin = blocks->begin;
    range.block_end = blocks->end;
  }
  range.embeddings = !o.no_embeddings;
  range.head = !o.no_head;
  auto st = store::BlobStore::open(o.store_dir, {.limit_bytes = o.limit_mib << 20});
  if (!st) return fail("fetch", st.error());
  // A peer that vanishes mid-write must be an error on that connection, not the end of the fetch.
  std::signal(SIGPIPE, SIG_IGN);
  ProgressBar bar;
  auto m = net::fetch_from_peers(
      **st, *cid, range,
      {.peers = o.peers,
       .data_dir = o.data_dir,
       .window = o.window,
       .timeout_s = o.timeout_s,
       .bandwidth = nullptr,
       .log = [](const std::string& line) { std::fprintf(stderr, "omni fetch: %s\n", line.c_str()); },
       .progress = [&bar](const store::FetchProgress& p, bool done) { bar.update(p, done); }});
  if (!m) return fail("fetch", m.error());
  std::printf("%s\n", o.cid.c_str());
  return 0;
}

}  // namespace

void register_fetch(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<FetchCliOptions>();
  auto* cmd = app.add_subcommand("fetch", "Fetch a sharded model from peers into a store");
  cmd->add_option("cid", o->cid, "Model CID (the manifest's)")->required();
  add_peer_list(cmd, "--peers", o->peers,
                "Comma-separated [ID@]HOST:PORT (or ID@relay:HOST:PORT) of nodes serving blobs (omni node)")
      ->required();
  cmd->add_option("--data-dir", o->data_dir, "Directory of this side's identity key (default: a throwaway key)");
  cmd->add_option("--store", o->store_dir, "Store directory")->required();
  cmd->add_option("--blocks", o->blocks, "Only blocks [A, B): A:B (A:A: none, only the other shards)")
      ->check(block_range(/*allow_empty=*/true));
  cmd->add_flag("--no-embeddings", o->no_embeddings, "Skip the embeddings shard");
  cmd->add_flag("--no-head", o->no_head, "Skip the head shard");
  cmd->add_option("--window", o->window, "Requests in flight per peer")->capture_default_str();
  cmd->add_option("--limit-mib", o->limit_mib, "Store size limit in MiB (0 = none)");
  cmd->add_option("--timeout", o->timeout_s, "Seconds before a silent peer is dropped")->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run_fetch(*o); });
}

}  // namespace omni::cli
