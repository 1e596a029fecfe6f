#include "swarm/provider_fetch.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "swarm/provider_record.h"

namespace omni::swarm {
namespace {

using Clock = std::chrono::steady_clock;

// At most this many providers per fetch, drawn at random: enough to spread the load and survive a
// few that fail, while records for dead addresses (anyone can publish some) cost boundedly many
// connection attempts.
constexpr size_t kMaxProvidersPerFetch = 8;

// "ID@ADDRESS,..." of up to kMaxProvidersPerFetch of the providers, their first (preferred) address each.
std::string peer_list(std::vector<const ProviderRecord*> providers) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::shuffle(providers.begin(), providers.end(), rng);
  if (providers.size() > kMaxProvidersPerFetch) providers.resize(kMaxProvidersPerFetch);
  std::string out;
  for (const ProviderRecord* p : providers) out += (out.empty() ? "" : ",") + p->peer_id + "@" + p->addresses.front();
  return out;
}

// One fetch: shards that the same providers hold, as one ShardRange (a run of blocks, or the
// embeddings, or the head, whose embeddings shard is in the store by then).
struct Batch {
  std::vector<const ProviderRecord*> providers;
  store::ShardRange range;
  std::string what;
};

}  // namespace

Result<store::Manifest> fetch_from_providers(store::BlobStore& store, Directory& directory, const store::Cid& model,
                                             const store::ShardRange& range, const ProviderFetchOptions& o) {
  auto log = [&](const std::string& line) {
    if (o.fetch.log) o.fetch.log(line);
  };
  const std::string cid = model.to_string();
  const auto deadline = Clock::now() + std::chrono::milliseconds(o.lookup_wait_ms);
  // Each peer's newest record over all reads: a DHT read often returns only part of what is stored.
  std::map<std::string, ProviderRecord> seen;
  auto read = [&]() -> Result<void> {
    auto found = lookup_providers(directory, cid);
    if (!found) return found.error().with_context("looking up the providers of model " + cid);
    for (auto& r : found->records)
      if (r.peer_id != o.self_peer_id)
        if (auto it = seen.find(r.peer_id); it == seen.end() || r.seq > it->second.seq) seen[r.peer_id] = r;
    return {};
  };
  auto wait_a_little = [&] {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return true;
  };

  std::optional<store::Manifest> manifest;
  if (store.has(model))
    if (auto m = store::load_manifest(store, model)) manifest = std::move(*m);
  if (!manifest) {
    for (;;) {
      if (auto r = read(); !r) return r.error();
      if (!seen.empty()) break;
      if (!wait_a_little()) return Error{ErrorCode::NotFound, "no node in the swarm provides model " + cid};
    }
    std::vector<const ProviderRecord*> all;
    for (const auto& [id, r] : seen) all.push_back(&r);
    net::PeerFetchOptions f = o.fetch;
    f.peers = peer_list(all);
    auto fetched = net::fetch_from_peers(store, model, {.block_begin = 0, .block_end = 0, .embeddings = false, .head = false}, f);
    if (!fetched) return fetched.error().with_context("fetching the manifest of model " + cid);
    manifest = std::move(*fetched);
  }

  // The shards still missing, in manifest order, each with the providers that hold it.
  for (;;) {
    std::vector<Batch> batches;
    std::string unprovided;
    for (const store::ShardEntry* s : store::shards_for_range(*manifest, range)) {
      if (store.verify(s->cid).ok()) continue;  // a damaged copy is removed by verify and fetched again
      const auto index = static_cast<size_t>(s - manifest->shards.data());
      std::vector<const ProviderRecord*> holders;
      for (const auto& [id, r] : seen)
        if (r.shards.size() == manifest->shards.size() && r.holds(index)) holders.push_back(&r);
      if (holders.empty()) {
        unprovided += (unprovided.empty() ? "" : ", ") + s->label();
        continue;
      }
      store::ShardRange one{.block_begin = 0, .block_end = 0, .embeddings = false, .head = false};
      if (s->role == store::ShardRole::Embeddings) one.embeddings = true;
      if (s->role == store::ShardRole::Head) one.head = true;
      if (s->role == store::ShardRole::Block) one.block_begin = s->block, one.block_end = s->block + 1;
      // A block right after the previous batch's blocks, from the same providers, joins it.
      if (!batches.empty() && s->role == store::ShardRole::Block && batches.back().providers == holders &&
          !batches.back().range.embeddings && !batches.back().range.head &&
          batches.back().range.block_end == s->block) {
        batches.back().range.block_end = s->block + 1;
        continue;
      }
      batches.push_back({std::move(holders), one, s->label()});
    }
    if (unprovided.empty()) {
      for (const Batch& b : batches) {
        net::PeerFetchOptions f = o.fetch;
        f.peers = peer_list(b.providers);
        std::string what = b.what;
        if (b.range.block_end > b.range.block_begin + 1)
          what = "blocks " + std::to_string(b.range.block_begin) + ":" + std::to_string(b.range.block_end);
        log("fetching " + what + " of model " + cid + " from " + std::to_string(b.providers.size()) + " provider(s)");
        if (auto r = net::fetch_from_peers(store, model, b.range, f); !r)
          return r.error().with_context("fetching " + what + " of model " + cid);
      }
      return *manifest;
    }
    if (!wait_a_little())
      return Error{ErrorCode::NotFound, "no node in the swarm provides the " + unprovided + " shard(s) of model " + cid};
    if (auto r = read(); !r) return r.error();
  }
}

}  // namespace omni::swarm
