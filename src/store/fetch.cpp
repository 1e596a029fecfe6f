#include "store/fetch.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <variant>

#include "store/shard.h"

namespace omni::store {
namespace {

using Clock = Env::Clock;

// A fixed set of threads running posted tasks in order of posting (move-only tasks: they carry
// chunk buffers).
class TaskQueue {
 public:
  explicit TaskQueue(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~TaskQueue() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  template <class F>
  void post(F f) {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::make_unique<Fn<F>>(std::move(f)));
    ++pending_;
    cv_.notify_one();
  }
  // Returns once every task posted so far has run.
  void wait_idle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return pending_ == 0; });
  }

 private:
  struct Task {
    virtual ~Task() = default;
    virtual void run() = 0;
  };
  template <class F>
  struct Fn final : Task {
    explicit Fn(F fn) : f(std::move(fn)) {}
    void run() override { f(); }
    F f;
  };
  void loop() {
    for (;;) {
      std::unique_ptr<Task> t;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        t = std::move(tasks_.front());
        tasks_.pop_front();
      }
      t->run();
      t.reset();  // drops the task's buffers before it counts as done
      std::lock_guard lock(mu_);
      if (--pending_ == 0) idle_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<std::unique_ptr<Task>> tasks_;
  size_t pending_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

unsigned default_workers() {
  // One per CPU for the hashing, and two more: each worker also waits for its writes, and one may
  // be waiting for its turn at the whole-blob hash (PartialBlob::offer_chunk). More than 16 would
  // find no work: each blob's hash takes its chunks one at a time, and few blobs are open at once.
  return std::clamp(std::thread::hardware_concurrency() + 2, 4u, 16u);
}

}  // namespace

struct Fetcher::Peer {
  std::shared_ptr<ChunkSource> source;
  bool dropped = false;
  uint32_t failures = 0;
  uint32_t inflight = 0;  // requests issued and not yet verified (or discarded)
};

// Events reach the fetch loop from the sources' threads (answers), the workers (verified chunks)
// and the sync thread (durability points, completed blobs). The queue is shared with every
// callback so that answers arriving after a fetch ended land somewhere harmless.
struct Fetcher::Shared {
  struct Arrived {
    uint64_t request;
    Result<ChunkBuffer> data;
  };
  struct Verified {
    uint64_t request;
    Result<bool> ok;  // false: the bytes failed verification; an Error: writing them failed
  };
  struct Synced {
    size_t job;
    bool finished;  // finish(), else flush()
    Result<void> result;
  };
  using Event = std::variant<Arrived, Verified, Synced>;

  void push(Event e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
    cv.notify_one();
  }

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  uint64_t next_request = 0;  // only the fetch loop issues; ids stay unique across fetches
};

struct Fetcher::Job {
  Cid cid;
  uint64_t size = 0;
  uint32_t chunk_size = 0;
  std::vector<Digest> hashes;
  std::string label;

  enum class State { kWaiting, kOpen, kFinishing, kDone } state = State::kWaiting;
  std::unique_ptr<PartialBlob> blob;
  std::deque<uint64_t> todo;
  std::vector<uint8_t> done, verifying, requesters;  // per chunk; requesters: unanswered reads
  uint64_t remaining = 0;                             // chunks not yet verified and written
  uint32_t unflushed = 0;
  bool flush_queued = false;
  Clock::time_point last_flush;
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
  options_.open_blobs = std::max(options_.open_blobs, 1u);
  if (options_.workers == 0) options_.workers = default_workers();
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
  if (store_.verify(cid).ok()) return {};  // a damaged copy is removed by verify and fetched again
  total_bytes_ = size, done_bytes_ = resumed_bytes_ = 0;
  std::vector<Job> jobs(1);
  jobs[0].cid = cid, jobs[0].size = size, jobs[0].chunk_size = chunk_size, jobs[0].hashes = hashes;
  jobs[0].label = label;
  return run(std::move(jobs));
}

Result<void> Fetcher::run(std::vector<Job> jobs) {
  struct Request {
    size_t peer;
    size_t job;
    uint64_t chunk;
    Clock::time_point start;
    bool answered = false;  // its bytes are being verified: no timeout, no endgame twin
  };
  std::map<uint64_t, Request> outstanding;
  TaskQueue workers(options_.workers), syncer(1);
  std::shared_ptr<Shared> shared = shared_;
  const auto timeout = std::chrono::milliseconds(options_.request_timeout_ms);
  const auto flush_interval = std::chrono::milliseconds(options_.flush_interval_ms);
  size_t next_job = 0, jobs_left = jobs.size(), open_jobs = 0;
  std::optional<Error> failure;

  auto requeue = [&](Job& job, uint64_t c) {
    if (job.requesters[c] == 0 && !job.done[c] && !job.verifying[c]) job.todo.push_front(c);
  };
  auto finish_job = [&](size_t j) {
    Job& job = jobs[j];
    job.state = Job::State::kFinishing;
    --open_jobs;
    syncer.post([shared, j, blob = job.blob.get()] { shared->push(Shared::Synced{j, true, blob->finish()}); });
  };
  auto flush_job = [&](size_t j) {
    Job& job = jobs[j];
    job.flush_queued = true;
    job.unflushed = 0;
    job.last_flush = store_.env().now();
    syncer.post([shared, j, blob = job.blob.get()] { shared->push(Shared::Synced{j, false, blob->flush()}); });
  };
  // Opens the next blob: its partial (reserving room and disk space) and the chunks it still needs.
  auto open_next = [&]() -> bool {
    if (next_job >= jobs.size() || open_jobs >= options_.open_blobs) return false;
    const size_t j = next_job++;
    Job& job = jobs[j];
    auto partial = store_.open_partial(job.cid, job.size, job.chunk_size, job.hashes);
    if (!partial) {
      failure = partial.error().with_context(job.label);
      return false;
    }
    job.blob = std::move(*partial);
    const uint64_t n = job.blob->n_chunks();
    job.done.assign(n, 0);
    job.verifying.assign(n, 0);
    job.requesters.assign(n, 0);
    for (uint64_t i = 0; i < n; ++i) {
      if (job.blob->has_chunk(i)) {
        job.done[i] = 1;
        ++stats_.chunks_resumed;
        done_bytes_ += job.blob->chunk_bytes(i);
        resumed_bytes_ += job.blob->chunk_bytes(i);
      } else {
        job.todo.push_back(i);
        ++job.remaining;
      }
    }
    job.last_flush = store_.env().now();
    job.state = Job::State::kOpen;
    ++open_jobs;
    if (job.remaining == 0) finish_job(j);
    report(job.label);
    return true;
  };
  // The next chunk nobody has asked for, from the earliest open blob; opens blobs as needed.
  auto fresh_chunk = [&]() -> std::optional<std::pair<size_t, uint64_t>> {
    for (;;) {
      for (size_t j = 0; j < next_job; ++j) {
        Job& job = jobs[j];
        if (job.state != Job::State::kOpen) continue;
        while (!job.todo.empty()) {
          uint64_t c = job.todo.front();
          if (!job.done[c] && !job.verifying[c] && job.requesters[c] == 0) return std::pair{j, c};
          job.todo.pop_front();
        }
      }
      if (failure || !open_next()) return std::nullopt;
    }
  };
  auto drop = [&](size_t p, const std::string& why) {
    Peer& peer = *peers_[p];
    if (peer.dropped) return;
    peer.dropped = true;
    stats_.dropped.push_back(peer.source->name() + ": " + why);
    // Unanswered reads go back to the queue; answers being verified finish (good bytes are good).
    for (auto it = outstanding.begin(); it != outstanding.end();) {
      if (it->second.peer != p || it->second.answered) {
        ++it;
        continue;
      }
      Job& job = jobs[it->second.job];
      --job.requesters[it->second.chunk];
      --peer.inflight;
      requeue(job, it->second.chunk);
      it = outstanding.erase(it);
    }
  };
  auto issue = [&](size_t p, size_t j, uint64_t c) {
    Job& job = jobs[j];
    const uint64_t id = ++shared->next_request;
    outstanding[id] = {p, j, c, store_.env().now()};
    ++job.requesters[c];
    ++peers_[p]->inflight;
    ++stats_.requests;
    std::weak_ptr<Shared> weak = shared;
    peers_[p]->source->read(job.cid, c * job.chunk_size, static_cast<uint32_t>(job.blob->chunk_bytes(c)),
                            [weak, id](Result<ChunkBuffer> r) {
                              if (auto sh = weak.lock()) sh->push(Shared::Arrived{id, std::move(r)});
                            });
  };
  // The blob a fetch-wide message names: the earliest one not yet complete.
  auto current_label = [&]() -> const std::string& {
    for (const Job& job : jobs)
      if (job.state != Job::State::kDone) return job.label;
    return jobs.back().label;
  };
  auto chunks_left = [&] {
    uint64_t n = 0;
    for (const Job& job : jobs)
      if (job.state == Job::State::kWaiting) n += chunk_count(job.size, job.chunk_size);
      else if (job.state == Job::State::kOpen) n += job.remaining;
    return n;
  };

  auto handle = [&](Shared::Event& event) {
    if (auto* a = std::get_if<Shared::Arrived>(&event)) {
      auto it = outstanding.find(a->request);
      if (it == outstanding.end()) return;  // from a dropped peer, or an earlier fetch
      Request& req = it->second;
      Job& job = jobs[req.job];
      Peer& peer = *peers_[req.peer];
      const uint64_t c = req.chunk;
      if (!a->data || job.done[c] || job.verifying[c]) {  // an error, or the endgame twin won
        --job.requesters[c];
        --peer.inflight;
        const size_t p = req.peer;
        outstanding.erase(it);
        if (!a->data && ++peer.failures >= options_.max_failures) drop(p, a->data.error().message);
        requeue(job, c);
        return;
      }
      req.answered = true;
      --job.requesters[c];
      job.verifying[c] = 1;
      workers.post([shared, id = a->request, c, blob = job.blob.get(), bytes = std::move(*a->data)]() mutable {
        shared->push(Shared::Verified{id, blob->offer_chunk(c, std::move(bytes))});
      });
    } else if (auto* v = std::get_if<Shared::Verified>(&event)) {
      auto it = outstanding.find(v->request);
      if (it == outstanding.end()) return;  // cannot happen: answered requests stay until verified
      const Request req = it->second;
      outstanding.erase(it);
      Job& job = jobs[req.job];
      const uint64_t c = req.chunk;
      --peers_[req.peer]->inflight;
      job.verifying[c] = 0;
      if (!v->ok) {  // local I/O: the disk, not the peer
        if (!failure) failure = v->ok.error().with_context(job.label);
        return;
      }
      if (!*v->ok) {
        ++stats_.bad_chunks;
        drop(req.peer, "sent chunk " + std::to_string(c) + " of " + job.label + " with bytes that fail verification");
        requeue(job, c);
        return;
      }
      job.done[c] = 1;
      --job.remaining;
      ++stats_.chunks_fetched;
      stats_.bytes_fetched += job.blob->chunk_bytes(c);
      done_bytes_ += job.blob->chunk_bytes(c);
      ++job.unflushed;
      if (job.remaining == 0) {
        finish_job(req.job);
      } else if (job.unflushed >= options_.flush_every && !job.flush_queued) {
        flush_job(req.job);
      }
      report(job.label);
    } else if (auto* s = std::get_if<Shared::Synced>(&event)) {
      Job& job = jobs[s->job];
      if (!s->finished) {
        job.flush_queued = false;
        if (!s->result && !failure) failure = s->result.error().with_context(job.label);
        return;
      }
      if (!s->result) {
        if (!failure) failure = s->result.error().with_context(job.label);
        return;
      }
      job.state = Job::State::kDone;
      job.blob.reset();
      --jobs_left;
    }
  };

  std::deque<Shared::Event> batch;
  while (jobs_left > 0 && !failure) {
    if (options_.cancelled && options_.cancelled()) {
      failure = Error{ErrorCode::Cancelled, current_label() + ": fetch cancelled (" +
                      std::to_string(chunks_left()) + " chunks left; verified chunks are kept)"};
      break;
    }
    // Fill every live peer's window: fresh chunks first, then (endgame) duplicates of chunks whose
    // only read is unanswered at another peer.
    for (size_t p = 0; p < peers_.size() && !failure; ++p) {
      Peer& peer = *peers_[p];
      while (!peer.dropped && peer.inflight < options_.window) {
        if (auto fresh = fresh_chunk()) {
          issue(p, fresh->first, fresh->second);
          continue;
        }
        std::optional<std::pair<size_t, uint64_t>> dup;
        for (const auto& [id, req] : outstanding) {
          const Job& job = jobs[req.job];
          if (req.peer != p && !req.answered && job.requesters[req.chunk] == 1 && !job.done[req.chunk] &&
              !job.verifying[req.chunk]) {
            dup = std::pair{req.job, req.chunk};
            break;
          }
        }
        if (!dup) break;
        issue(p, dup->first, dup->second);
      }
    }
    if (failure) break;
    if (outstanding.empty() && chunks_left() > 0) {
      std::string why;
      for (const auto& d : stats_.dropped) why += "\n  " + d;
      failure = Error{ErrorCode::Unavailable, current_label() + ": no peer left to fetch " +
                                                  std::to_string(chunks_left()) + " chunks from" +
                                                  (why.empty() ? std::string(" (no peers given)") : ":" + why)};
      break;
    }
    {
      std::unique_lock lock(shared->mu);
      shared->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !shared->events.empty(); });
      batch.swap(shared->events);
    }
    for (auto& e : batch) handle(e);
    batch.clear();
    const auto now = store_.env().now();
    for (size_t j = 0; j < next_job; ++j) {
      Job& job = jobs[j];
      if (job.state == Job::State::kOpen && job.unflushed > 0 && !job.flush_queued && now - job.last_flush > flush_interval)
        flush_job(j);
    }
    for (size_t p = 0; p < peers_.size(); ++p)
      for (const auto& [id, req] : outstanding)
        if (req.peer == p && !req.answered && now - req.start > timeout) {
          drop(p, "no answer within " + std::to_string(options_.request_timeout_ms) + " ms");
          break;
        }
  }

  // Stop: let the workers and the sync thread finish what they hold (they use the jobs' blobs), and
  // account for it; open blobs record their verified chunks (PartialBlob's destructor flushes).
  workers.wait_idle();
  syncer.wait_idle();
  {
    std::lock_guard lock(shared->mu);
    batch.swap(shared->events);
  }
  for (auto& e : batch)
    if (!std::holds_alternative<Shared::Arrived>(e)) handle(e);
  batch.clear();
  syncer.wait_idle();  // flushes or finishes the events above started
  {
    std::lock_guard lock(shared->mu);
    batch.swap(shared->events);  // answers still arriving are dropped on arrival (no request)
  }
  for (auto& e : batch)
    if (std::holds_alternative<Shared::Synced>(e)) handle(e);
  batch.clear();
  for (auto& job : jobs) job.blob.reset();
  if (failure) return *failure;
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
      auto promise = std::make_shared<std::promise<Result<ChunkBuffer>>>();
      auto future = promise->get_future();
      ++stats_.requests;
      peer.source->read(cid, bytes.size(), piece, [promise](Result<ChunkBuffer> r) { promise->set_value(std::move(r)); });
      if (future.wait_for(std::chrono::milliseconds(options_.request_timeout_ms)) != std::future_status::ready) {
        failure = "no answer within " + std::to_string(options_.request_timeout_ms) + " ms";
        break;
      }
      auto r = future.get();
      if (!r) {
        failure = r.error().message;
        break;
      }
      bytes.insert(bytes.end(), r->data(), r->data() + r->size());
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
  return Error{ErrorCode::Unavailable,
               "no peer supplied " + cid.to_string() + (why.empty() ? std::string(" (no peers given)") : ":" + why)};
}

Result<Manifest> Fetcher::fetch_model(const Cid& model, const ShardRange& range) {
  if (!store_.has(model)) {
    auto bytes = fetch_small(model, kMaxManifestBytes);
    if (!bytes) return bytes.error();
    if (auto m = Manifest::decode(*bytes); !m) return m.error().with_context(model.to_string());
    auto put = store_.put(*bytes);
    if (!put) return put.error();
  }
  if (auto r = store_.pin(model); !r) return r.error();
  auto manifest = load_manifest(store_, model);
  if (!manifest) return manifest.error();
  auto needed = shards_for_range(*manifest, range);
  // Pinned before anything is fetched: making room for a later shard must not evict an earlier one
  // of the same model.
  std::vector<Cid> cids;
  for (const ShardEntry* s : needed) cids.push_back(s->cid);
  if (auto r = store_.pin_all(cids); !r) return r.error();
  total_bytes_ = done_bytes_ = resumed_bytes_ = 0;
  std::vector<Job> jobs;
  std::set<Cid> queued;  // identical shards share a CID and are fetched once
  for (const ShardEntry* s : needed) {
    if (!queued.insert(s->cid).second) continue;
    total_bytes_ += s->size;
    if (store_.verify(s->cid).ok()) {  // a damaged copy is removed by verify and fetched again
      done_bytes_ += s->size, resumed_bytes_ += s->size;
      continue;
    }
    Job& job = jobs.emplace_back();
    job.cid = s->cid, job.size = s->size, job.chunk_size = manifest->chunk_size, job.hashes = s->chunk_hashes;
    job.label = s->label();
  }
  if (auto r = run(std::move(jobs)); !r) return r.error();
  report("done");
  return manifest;
}

}  // namespace omni::store
