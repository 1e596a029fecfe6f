#include "swarm/node_profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace omni::swarm {

ModelFootprint footprint_of(const model::Model& model) {
  ModelFootprint f;
  f.block_bytes.assign(model.config().n_layer, 0);
  auto add = [&f](const gguf::File& file) {
    for (const auto& t : file.tensors()) {
      unsigned block = 0;
      int consumed = 0;
      if (std::sscanf(t.name.c_str(), "blk.%u.%n", &block, &consumed) == 1 && consumed > 0 &&
          block < f.block_bytes.size())
        f.block_bytes[block] += t.n_bytes;
      else if (t.name == "token_embd.weight")
        f.embedding_bytes = std::max<uint64_t>(f.embedding_bytes, t.n_bytes);
    }
  };
  add(model.file());
  for (const auto& more : model.more_files()) add(more);
  return f;
}

ModelFootprint footprint_of(const store::Manifest& manifest) {
  ModelFootprint f;
  f.block_bytes.assign(manifest.model.n_layer, 0);
  for (const auto& s : manifest.shards) {
    if (s.role == store::ShardRole::Block && s.block < f.block_bytes.size()) f.block_bytes[s.block] += s.size;
    else if (s.role == store::ShardRole::Embeddings) f.embedding_bytes += s.size;
  }
  return f;
}

Result<double> measure_block_tps(const model::Model& model, int threads, uint32_t budget_ms) {
  const model::ModelConfig& cfg = model.config();
  if (cfg.n_layer == 0) return Error{ErrorCode::InvalidArgument, "the model has no blocks"};
  // The first block the model holds (a node started from a model CID holds only its range).
  const uint32_t block = std::min(model.range().block_begin, cfg.n_layer - 1);
  auto session = model::Session::create(model, block, block + 1, 256);
  if (!session) return session.error();
  kernels::ThreadPool pool(std::max(threads, 1));
  std::vector<float> out;
  // Past block 0, or without the embeddings (whose shape gives n_vocab), the block takes a hidden
  // state: any row will do.
  const bool from_tokens = block == 0 && model.range().embeddings && cfg.n_vocab > 0;
  const int32_t token[1] = {from_tokens ? 1 % static_cast<int32_t>(cfg.n_vocab) : 0};
  std::vector<float> hidden(from_tokens ? 0 : cfg.n_embd);
  for (size_t i = 0; i < hidden.size(); ++i) hidden[i] = 0.1f * static_cast<float>((i % 7) + 1);
  const std::span<const int32_t> tokens = from_tokens ? std::span<const int32_t>(token) : std::span<const int32_t>();
  // One warm-up call (page faults of the weights), then timed ones.
  if (auto r = (*session)->forward(tokens, hidden, model::Output::Hidden, out, pool); !r) return r.error();
  const auto t0 = std::chrono::steady_clock::now();
  const auto budget = std::chrono::milliseconds(budget_ms);
  uint32_t n = 0;
  while ((*session)->n_past() < 250 && (n < 4 || std::chrono::steady_clock::now() - t0 < budget)) {
    if (auto r = (*session)->forward(tokens, hidden, model::Output::Hidden, out, pool); !r) return r.error();
    ++n;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return n / std::max(s, 1e-9);
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      uint64_t kib = 0;
      fields >> kib;
      return kib << 10;
    }
  }
  return 0;
}

Announcer::Announcer(Publish publish, uint64_t seq, uint32_t interval_s, uint32_t ttl_s,
                     std::function<void(const std::string&)> log)
    : publish_(std::move(publish)),
      seq_(seq),
      interval_s_(std::max(interval_s, 1u)),
      ttl_s_(std::max(ttl_s, interval_s_ + 1)),
      log_(std::move(log)) {}

Announcer::Announcer(Directory& directory, net::Identity identity, NodeRecord record, uint32_t interval_s,
                     uint32_t ttl_s, std::function<void(const std::string&)> log)
    : Announcer(
          [&directory, identity = std::move(identity), record](int64_t issued, int64_t expires,
                                                                uint64_t seq) mutable -> Result<void> {
            record.issued_ms = issued, record.expires_ms = expires, record.seq = seq;
            auto bytes = sign_record(record, identity);
            if (!bytes) return bytes.error();
            return directory.announce(record.model_id, record.peer_id, std::move(*bytes));
          },
          record.seq, interval_s, ttl_s, std::move(log)) {}

Announcer::Announcer(Directory& directory, net::Identity identity, ProviderRecord record, uint32_t interval_s,
                     uint32_t ttl_s, std::function<void(const std::string&)> log)
    : Announcer(
          [&directory, identity = std::move(identity), record](int64_t issued, int64_t expires,
                                                                uint64_t seq) mutable -> Result<void> {
            record.issued_ms = issued, record.expires_ms = expires, record.seq = seq;
            auto bytes = sign_provider_record(record, identity);
            if (!bytes) return bytes.error();
            return directory.provide(record.model_cid, record.peer_id, std::move(*bytes));
          },
          record.seq, interval_s, ttl_s, std::move(log)) {}

Announcer::~Announcer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<void> Announcer::announce_once() {
  const int64_t issued = unix_now_ms();
  seq_ = next_seq(seq_, issued);
  return publish_(issued, issued + int64_t{ttl_s_} * 1000, seq_);
}

Result<void> Announcer::start() {
  Result<void> first = announce_once();
  thread_ = std::thread([this, failures = first.ok() ? 0u : 1u] { loop(failures); });
  return first;
}

void Announcer::announce_now() {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  wake_.notify_all();
}

void Announcer::loop(uint32_t failures) {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, std::chrono::seconds(failures ? kRetryS : interval_s_),
                   [this] { return stopping_ || poked_; });
    if (stopping_) break;
    poked_ = false;
    lock.unlock();
    // A failed refresh is retried soon; a record already out stays valid until it expires. Only
    // changes are logged: a lone node retrying every second would otherwise flood its log.
    if (auto r = announce_once(); !r) {
      if (failures++ == 0 && log_)
        log_("announce failed (retrying every " + std::to_string(kRetryS) + " s): " + r.error().message);
    } else {
      if (failures > 0 && log_) log_("announced after " + std::to_string(failures) + " failed attempt(s)");
      failures = 0;
    }
    lock.lock();
  }
}

}  // namespace omni::swarm
