// omni shard MODEL.gguf --store DIR: splits a model into content-addressed shards and prints the
// model's CID; omni shard --verify CID --store DIR: re-hashes every shard against the manifest.
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>

#include "cli_options.h"
#include "commands.h"
#include "store/shard.h"

namespace omni::cli {
namespace {

struct ShardOptions {
  std::string model_path;
  std::string verify;
  std::string store_dir;
  std::string sha256;
  uint32_t chunk_kib = store::kDefaultChunkSize / 1024;
  uint64_t limit_mib = 0;
};

int run(ShardOptions o) {
  auto fail = [](const Error& e) { return cli::fail("shard", e); };
  // A URL's file is fetched into the same store first (the store is open only while it is).
  if (!o.model_path.empty())
    if (auto r = resolve_model(o.model_path, o.sha256, o.store_dir, "shard"); !r) return fail(r.error());
  auto st = store::BlobStore::open(o.store_dir, {.limit_bytes = o.limit_mib << 20});
  if (!st) return fail(st.error());
  if (!o.verify.empty()) {
    auto cid = store::Cid::parse(o.verify);
    if (!cid) return fail(cid.error());
    size_t n = 0;
    auto r = store::verify_model(**st, *cid, [&](const store::ShardEntry&) { ++n; });
    if (!r) return fail(r.error());
    std::printf("%s: %zu shards verified\n", o.verify.c_str(), n);
    return 0;
  }
  auto rep = store::shard_model(o.model_path, **st, o.chunk_kib * 1024);
  if (!rep) return fail(rep.error());
  uint64_t total = 0;
  for (const auto& s : rep->manifest.shards) {
    total += s.size;
    std::fprintf(stderr, "  %-12s %s %12" PRIu64 " bytes, %zu chunks\n", s.label().c_str(), s.cid.to_string().c_str(),
                 s.size, s.chunk_hashes.size());
  }
  std::fprintf(stderr, "%zu shards, %.1f MiB (%.1f MiB new, %u already stored)\n", rep->manifest.shards.size(),
               static_cast<double>(total) / (1 << 20), static_cast<double>(rep->new_bytes) / (1 << 20),
               rep->reused_shards);
  std::printf("%s\n", rep->model.to_string().c_str());
  return 0;
}

}  // namespace

void register_shard(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ShardOptions>();
  auto* cmd = app.add_subcommand("shard", "Split a GGUF model into content-addressed shards in a store");
  cmd->add_option("model", o->model_path, "GGUF model file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV]");
  add_model_sha256(cmd, o->sha256);
  cmd->add_option("--verify", o->verify, "Re-hash the shards of model CID instead");
  cmd->add_option("--store", o->store_dir, "Store directory")->required();
  cmd->add_option("--chunk-kib", o->chunk_kib,
                  "Chunk size in KiB (hashed and transferred unit), at most 4096: what a peer serves in one read")
      ->capture_default_str()
      ->check(count_in(4, 64 * 1024));
  // MiB to bytes must fit in 64 bits.
  cmd->add_option("--limit-mib", o->limit_mib, "Store size limit in MiB (0 = none)")->check(count_in(0, INT64_MAX >> 20));
  cmd->callback([o, &exit_code] {
    if (o->model_path.empty() && o->verify.empty()) throw CLI::ValidationError("give a MODEL.gguf to shard, or --verify CID");
    if (!o->model_path.empty() && !o->verify.empty())
      throw CLI::ValidationError("give a MODEL.gguf to shard or --verify CID, not both");
    exit_code = run(*o);
  });
}

}  // namespace omni::cli
