#include "store/fetch.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>

#include "store/shard.h"

namespace omni::store {

struct Fetcher::Peer {
  std::shared_ptr<ChunkSource> source;
  bool dropped = false;
  uint32_t failures = 0;
  uint32_t inflight = 0;
};

// Completions arrive on the sources' threads; the fetch loop consumes them on its own. The state is
// shared with every callback so that answers arriving after a fetch ended land somewhere harmless.
struct Fetcher::Shared {
  struct Completion {
    uint64_t request;
    Result<std::vector<uint8_t>> data;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Completion> done;
};

Fetcher::Fetcher(BlobStore& store, std::vector<std::shared_ptr<ChunkSource>> peers, FetchOptions options)
    : store_(store), options_(std::move(options)), shared_(std::make_shared<Shared>()) {
  for (auto& p : peers) {
    auto peer = std::make_unique<Peer>();
    peer->source = std::move(p);
    peers_.push_back(std::move(peer));
  }
  options_.window = std::max(options_.window, 1u);
  options_.max_failures = std::max(options_.max_failures, 1u);
}

Fetcher::~Fetcher() = default;

size_t Fetcher::active_peers() const {
  return static_cast<size_t>(std::count_if(peers_.begin(), peers_.end(), [](const auto& p) { return !p->dropped; }));
}

void Fetcher::report(const std::string& label) {
  if (!options_.progress) return;
  options_.progress({label, total_bytes_, done_bytes_, resumed_bytes_, static_cast<uint32_t>(active_peers())});
}

Result<void> Fetcher::fetch_blob(const Cid& cid, uint64_t size, uint32_t chunk_size, const std::vector<Digest>& hashes,
                                 const std::string& label) {
  if (store_.has(cid)) return {};
  if (!in_model_) total_bytes_ = size, done_bytes_ = resumed_bytes_ = 0;
  auto partial = store_.open_partial(cid, size, chunk_size, hashes);
  if (!partial) return Error{label + ": " + partial.error().message};
  return run_blob(**partial, label);
}

Result<void> Fetcher::run_blob(PartialBlob& blob, const std::string& label) {
  const uint64_t n = blob.n_chunks();
  std::deque<uint64_t> todo;
  std::vector<uint8_t> done(n, 0);
  std::vector<uint8_t> requesters(n, 0);  // reads in flight per chunk (2 at most, in the endgame)
  uint64_t remaining = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (blob.has_chunk(i)) {
      done[i] = 1;
      ++stats_.chunks_resumed;
      done_bytes_ += blob.chunk_bytes(i);
      resumed_bytes_ += blob.chunk_bytes(i);
    } else {
      todo.push_back(i);
      ++remaining;
    }
  }
  report(label);

  struct Request {
    size_t peer;
    uint64_t chunk;
    std::chrono::steady_clock::time_point start;
  };
  std::map<uint64_t, Request> outstanding;
  static uint64_t next_request = 0;  // only this thread issues; ids stay unique across fetches
  const Cid cid = blob.cid();
  const auto timeout = std::chrono::milliseconds(options_.request_timeout_ms);

  auto drop = [&](size_t p, const std::string& why) {
    Peer& peer = *peers_[p];
    if (peer.dropped) return;
    peer.dropped = true;
    stats_.dropped.push_back(peer.source->name() + ": " + why);
    for (auto it = outstanding.begin(); it != outstanding.end();) {
      if (it->second.peer != p) {
        ++it;
        continue;
      }
      uint64_t c = it->second.chunk;
      if (--requesters[c] == 0 && !done[c]) todo.push_front(c);
      it = outstanding.erase(it);
    }
    peer.inflight = 0;
  };

  auto issue = [&](size_t p, uint64_t chunk) {
    uint64_t id = ++next_request;
    outstanding[id] = {p, chunk, std::chrono::steady_clock::now()};
    ++requesters[chunk];
    ++peers_[p]->inflight;
    ++stats_.requests;
    std::weak_ptr<Shared> weak = shared_;
    peers_[p]->source->read(cid, chunk * blob.chunk_size(), static_cast<uint32_t>(blob.chunk_bytes(chunk)),
                            [weak, id](Result<std::vector<uint8_t>> r) {
                              if (auto sh = weak.lock()) {
                                std::lock_guard lock(sh->mu);
                                sh->done.push_back({id, std::move(r)});
                                sh->cv.notify_one();
                              }
                            });
  };

  std::deque<Shared::Completion> batch;
  auto last_flush = std::chrono::steady_clock::now();
  while (remaining > 0) {
    if (options_.cancelled && options_.cancelled()) {
      if (auto r = blob.flush(); !r) return r;
      return Error{label + ": fetch cancelled (" + std::to_string(remaining) + " chunks left; verified chunks are kept)"};
    }
    // Fill every live peer's window: fresh chunks first, then (endgame) duplicates of chunks that
    // are outstanding at another peer only.
    for (size_t p = 0; p < peers_.size(); ++p) {
      Peer& peer = *peers_[p];
      while (!peer.dropped && peer.inflight < options_.window) {
        while (!todo.empty() && (done[todo.front()] || requesters[todo.front()] > 0)) todo.pop_front();
        if (!todo.empty()) {
          uint64_t c = todo.front();
          todo.pop_front();
          issue(p, c);
          continue;
        }
        const Request* dup = nullptr;
        for (const auto& [id, req] : outstanding)
          if (req.peer != p && requesters[req.chunk] == 1 && !done[req.chunk]) {
            dup = &req;
            break;
          }
        if (!dup) break;
        issue(p, dup->chunk);
      }
    }
    if (outstanding.empty()) {
      if (auto r = blob.flush(); !r) return r;
      std::string why;
      for (const auto& d : stats_.dropped) why += "\n  " + d;
      return Error{label + ": no peer left to fetch " + std::to_string(remaining) + " chunks from" +
                   (why.empty() ? std::string(" (no peers given)") : ":" + why)};
    }
    {
      std::unique_lock lock(shared_->mu);
      shared_->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !shared_->done.empty(); });
      batch.swap(shared_->done);
    }
    for (auto& c : batch) {
      auto it = outstanding.find(c.request);
      if (it == outstanding.end()) continue;  // from a dropped peer or an earlier fetch
      const Request req = it->second;
      outstanding.erase(it);
      --requesters[req.chunk];
      Peer& peer = *peers_[req.peer];
      --peer.inflight;
      if (done[req.chunk]) continue;  // the endgame twin won
      if (!c.data) {
        if (++peer.failures >= options_.max_failures) drop(req.peer, c.data.error().message);
        if (requesters[req.chunk] == 0) todo.push_front(req.chunk);
        continue;
      }
      auto ok = blob.offer_chunk(req.chunk, *c.data);
      if (!ok) return Error{label + ": " + ok.error().message};  // local I/O: the disk, not the peer
      if (!*ok) {
        ++stats_.bad_chunks;
        drop(req.peer, "sent chunk " + std::to_string(req.chunk) + " of " + label + " with bytes that fail verification");
        if (requesters[req.chunk] == 0) todo.push_front(req.chunk);
        continue;
      }
      done[req.chunk] = 1;
      --remaining;
      ++stats_.chunks_fetched;
      stats_.bytes_fetched += c.data->size();
      done_bytes_ += c.data->size();
      if (blob.unflushed() >= options_.flush_every ||
          (blob.unflushed() > 0 && std::chrono::steady_clock::now() - last_flush >
                                       std::chrono::milliseconds(options_.flush_interval_ms))) {
        if (auto r = blob.flush(); !r) return r;
        last_flush = std::chrono::steady_clock::now();
      }
      report(label);
    }
    batch.clear();
    const auto now = std::chrono::steady_clock::now();
    for (size_t p = 0; p < peers_.size(); ++p)
      for (const auto& [id, req] : outstanding)
        if (req.peer == p && now - req.start > timeout) {
          drop(p, "no answer within " + std::to_string(options_.request_timeout_ms) + " ms");
          break;
        }
  }
  if (auto r = blob.finish(); !r) return Error{label + ": " + r.error().message};
  return {};
}

Result<std::vector<uint8_t>> Fetcher::fetch_small(const Cid& cid, uint64_t max_bytes) {
  const uint32_t piece = 4u << 20;
  for (size_t p = 0; p < peers_.size(); ++p) {
    Peer& peer = *peers_[p];
    if (peer.dropped) continue;
    std::vector<uint8_t> bytes;
    std::string failure;
    while (failure.empty()) {
      auto promise = std::make_shared<std::promise<Result<std::vector<uint8_t>>>>();
      auto future = promise->get_future();
      ++stats_.requests;
      peer.source->read(cid, bytes.size(), piece, [promise](Result<std::vector<uint8_t>> r) { promise->set_value(std::move(r)); });
      if (future.wait_for(std::chrono::milliseconds(options_.request_timeout_ms)) != std::future_status::ready) {
        failure = "no answer within " + std::to_string(options_.request_timeout_ms) + " ms";
        break;
      }
      auto r = future.get();
      if (!r) {
        failure = r.error().message;
        break;
      }
      bytes.insert(bytes.end(), r->begin(), r->end());
      if (bytes.size() > max_bytes) failure = "blob is larger than " + std::to_string(max_bytes) + " bytes";
      else if (r->size() < piece) break;
    }
    if (failure.empty() && Cid::of(bytes) == cid) return bytes;
    if (failure.empty()) {
      ++stats_.bad_chunks;
      failure = "sent bytes that do not match " + cid.to_string();
    }
    peer.dropped = true;
    stats_.dropped.push_back(peer.source->name() + ": " + failure);
  }
  std::string why;
  for (const auto& d : stats_.dropped) why += "\n  " + d;
  return Error{"no peer supplied " + cid.to_string() + (why.empty() ? std::string(" (no peers given)") : ":" + why)};
}

Result<Manifest> Fetcher::fetch_model(const Cid& model, const model::LoadRange& range) {
  if (!store_.has(model)) {
    auto bytes = fetch_small(model, kMaxManifestBytes);
    if (!bytes) return bytes.error();
    if (auto m = Manifest::decode(*bytes); !m) return Error{model.to_string() + ": " + m.error().message};
    auto put = store_.put(*bytes);
    if (!put) return put.error();
  }
  // Pinned first, and each shard as it completes: making room for a later shard must not evict
  // an earlier one of the same model.
  if (auto r = store_.pin(model); !r) return r.error();
  auto manifest = load_manifest(store_, model);
  if (!manifest) return manifest.error();
  auto needed = shards_for_range(*manifest, range);
  total_bytes_ = done_bytes_ = resumed_bytes_ = 0;
  for (const ShardEntry* s : needed) {
    total_bytes_ += s->size;
    if (store_.has(s->cid)) done_bytes_ += s->size, resumed_bytes_ += s->size;
  }
  in_model_ = true;
  for (const ShardEntry* s : needed) {
    if (!store_.has(s->cid)) {
      auto r = fetch_blob(s->cid, s->size, manifest->chunk_size, s->chunk_hashes, s->label());
      if (!r) {
        in_model_ = false;
        return r.error();
      }
    }
    if (auto r = store_.pin(s->cid); !r) return r.error();
  }
  in_model_ = false;
  report("done");
  return manifest;
}

}  // namespace omni::store
