#include "swarm/membership.h"

#include <unistd.h>

#include <cstdio>
#include <random>
#include <thread>

#include "base/parse.h"
#include "net/node_info.h"
#include "proto/node.capnp.h"
#include "swarm/assignment.h"
#include "swarm/link_meter.h"

namespace omni::swarm {

Membership::~Membership() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (rebalancer_.joinable()) rebalancer_.join();
  if (link_meter_.joinable()) link_meter_.join();
  provider_announcer_.reset();  // stop refreshing before the directory goes
  announcer_.reset();
}

uint32_t Membership::block_begin() const {
  std::lock_guard lock(mutex_);
  return record_.block_begin;
}

uint32_t Membership::block_end() const {
  std::lock_guard lock(mutex_);
  return record_.block_end;
}

Result<std::unique_ptr<DhtDirectory>> Membership::start_directory(const JoinOptions& options) {
  DhtOptions dht;
  dht.bind_host = options.dht_host;
  dht.port = options.dht_port;
  dht.bootstrap = options.bootstrap;
  dht.lan = options.lan;
  dht.record_ttl_s = options.record_ttl_s;
  return DhtDirectory::start(dht);
}

Result<std::unique_ptr<Membership>> Membership::join(const JoinOptions& options, const std::string& model_path,
                                                     const net::ModelIdentity& model_identity,
                                                     const std::string& blocks, uint64_t kv_bytes, int threads,
                                                     const net::Identity& identity,
                                                     std::function<void(const std::string&)> log) {
  auto model = model::Model::load(model_path);
  if (!model) return model.error().with_context("joining the swarm needs the model as a GGUF file");
  auto directory = start_directory(options);
  if (!directory) return directory.error();
  return join(options, std::move(*directory), **model, model_identity, blocks, kv_bytes, threads,
              identity, std::move(log));
}

Result<std::unique_ptr<Membership>> Membership::join(const JoinOptions& options,
                                                     std::unique_ptr<DhtDirectory> directory,
                                                     const model::Model& model,
                                                     const net::ModelIdentity& identity_of_model,
                                                     const std::string& blocks, uint64_t kv_bytes, int threads,
                                                     const net::Identity& identity,
                                                     std::function<void(const std::string&)> log) {
  std::unique_ptr<Membership> m(new Membership());
  m->options_ = options;
  m->log_ = std::move(log);
  m->identity_ = std::make_unique<net::Identity>(identity);
  m->directory_ = std::move(directory);
  const auto& cfg = model.config();
  const model::LoadRange& held = model.range();
  const bool whole = held.block_begin == 0 && held.block_end >= cfg.n_layer;
  if (!whole && blocks.empty())
    return Error{ErrorCode::InvalidArgument,
                 "a node that holds only some of the model's blocks (started from a model CID) needs --blocks"};

  auto tps = measure_block_tps(model, threads);
  if (!tps) return tps.error().with_context("measuring throughput");
  NodeRecord& r = m->record_;
  r.peer_id = m->identity_->peer_id();
  r.model_id = model_key(identity_of_model.cid);
  r.model_name = identity_of_model.name;
  r.n_layer = cfg.n_layer;
  r.block_tps = *tps;
  r.protocol_version = proto::PROTOCOL_VERSION;
  RecordProber::Options vetting;
  vetting.timeout_ms = options.probe_timeout_ms;
  vetting.reputation = options.reputation;
  m->prober_ = std::make_unique<RecordProber>(*m->identity_, identity_of_model, vetting);

  if (!blocks.empty()) {
    auto range = parse_block_range(blocks);
    if (!range) return range.error().with_context("--blocks");
    if (range->end > cfg.n_layer)
      return Error{ErrorCode::InvalidArgument,
                   "--blocks '" + blocks + "' ends past the model's " + std::to_string(cfg.n_layer) + " blocks"};
    r.block_begin = range->begin;
    r.block_end = range->end;
    return m;
  }
  m->chose_blocks_ = true;
  // Memory planner: how many blocks fit next to the KV budget.
  const uint64_t memory = options.max_memory_mib ? options.max_memory_mib << 20 : available_memory_bytes();
  auto fit = blocks_that_fit(footprint_of(model), kv_bytes, memory);
  if (!fit) return fit.error();
  uint32_t length = *fit;
  if (options.max_blocks) length = std::min(length, options.max_blocks);
  // Nodes started together would all read the same picture: a random wait spreads their reads (the
  // settling after the announce resolves what collides anyway).
  if (options.join_jitter_ms > 0) {
    std::mt19937_64 rng(std::random_device{}());
    std::uniform_int_distribution<uint32_t> wait(0, options.join_jitter_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait(rng)));
  }
  // The swarm as the directory shows it now (give a fresh DHT node a moment to find its peers).
  std::vector<NodeRecord> listed;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto found = lookup(*m->directory_, r.model_id);
    if (!found) return found.error().with_context("reading the swarm's coverage");
    listed.clear();
    for (auto& o : found->records)
      if (o.peer_id != r.peer_id) listed.push_back(o);  // our own record from an earlier run is stale
    if (!listed.empty() || options.bootstrap.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::vector<std::string> left_out;
  const std::vector<NodeRecord> others = m->prober_->answering(listed, &left_out);
  if (m->log_)
    for (const auto& why : left_out) m->log_("joining: " + why);
  const Span span = choose_span(coverage_of(m->weighed(others), cfg.n_layer), length, *tps / length);
  r.block_begin = span.begin;
  r.block_end = span.end;
  char line[200];
  std::snprintf(line, sizeof line,
                "chose blocks %u:%u (%u fit in %llu MiB; %.0f tokens/s per block; %zu other nodes serve the model)",
                span.begin, span.end, *fit, static_cast<unsigned long long>(memory >> 20), *tps, others.size());
  if (m->log_) m->log_(line);
  return m;
}

std::string Membership::reachable_address(const std::string& listen_address) const {
  auto where = parse_host_port(listen_address);
  if (!where) return listen_address;  // not HOST:PORT (the listener accepted it): announce it as it is
  std::string_view host = options_.announce_host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!host.empty())
    where->host = std::string(host);
  else if (where->host == "0.0.0.0" || where->host == "::")
    where->host = "127.0.0.1";  // listening everywhere: say where a local client finds us (see --announce-host)
  return where->to_string();
}

Result<void> Membership::announce_addresses(std::vector<std::string> addresses, uint32_t max_sessions) {
  NodeRecord record;
  {
    std::lock_guard lock(mutex_);
    if (announcer_) {
      // Readers keep the record with the highest sequence number: start above every refresh so far
      // (the Announcer's seqs are at most its last issue time plus a few; see next_seq).
      record_.seq = next_seq(record_.seq, unix_now_ms());
    }
    record_.addresses = std::move(addresses);
    record_.max_sessions = record_.free_sessions = max_sessions;
    record = record_;
  }
  const std::vector<std::string> addresses_now = record.addresses;
  std::lock_guard announcing(announcer_mutex_);
  announcer_.reset();
  const uint64_t first_seq = record.seq;
  // Each refresh carries the latest link figures (the rest of the record changes only here).
  Announcer::Publish publish = [this, record = std::move(record)](int64_t issued, int64_t expires,
                                                                  uint64_t seq) mutable -> Result<void> {
    record.issued_ms = issued, record.expires_ms = expires, record.seq = seq;
    {
      std::lock_guard lock(mutex_);
      record.links = links_;
    }
    auto bytes = sign_record(record, *identity_);
    if (!bytes) return bytes.error();
    return directory_->announce(record.model_id, record.peer_id, std::move(*bytes));
  };
  announcer_ = std::make_unique<Announcer>(std::move(publish), first_seq, options_.announce_interval_s,
                                           options_.record_ttl_s, log_);
  auto announced = announcer_->start();
  if (!link_meter_.joinable()) link_meter_ = std::thread([this] { link_loop(); });
  if (provided_) {
    ProviderRecord provider = *provided_;
    provider.addresses = addresses_now;
    provider_announcer_.reset();
    provider_announcer_ = std::make_unique<Announcer>(*directory_, *identity_, std::move(provider),
                                                      options_.announce_interval_s, options_.record_ttl_s, log_);
    if (auto p = provider_announcer_->start(); !p && announced)
      return p.error().with_context("announcing the shards this node provides");
  }
  return announced;
}

void Membership::provide(const std::string& model_cid, std::vector<bool> shards) {
  ProviderRecord r;
  r.peer_id = identity_->peer_id();
  r.model_cid = model_cid;
  r.shards = std::move(shards);
  provided_ = std::move(r);
  std::lock_guard lock(mutex_);
  record_.model_cid = model_cid;
}

void Membership::start_rebalancing() {
  if (!chose_blocks_ || rebalancer_.joinable()) return;
  rebalancer_ = std::thread([this] { rebalance_loop(); });
}

std::optional<Span> Membership::pending_move() const {
  std::lock_guard lock(mutex_);
  return pending_;
}

void Membership::moved(Span to) {
  std::lock_guard lock(mutex_);
  record_.block_begin = to.begin;
  record_.block_end = to.end;
  pending_.reset();
}

void Membership::cancel_move(const std::string& why) {
  {
    std::lock_guard lock(mutex_);
    pending_.reset();
  }
  if (log_) log_("not moving: " + why);
}

std::vector<NodeRecord> Membership::weighed(const std::vector<NodeRecord>& records) const {
  if (!options_.reputation) return records;
  const int64_t now = unix_now_s();
  return weigh_by_reputation(records, [&](const std::string& peer) { return options_.reputation->score(peer, now); });
}

bool Membership::sleep_ms(uint32_t ms) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

std::vector<NodeRecord> Membership::answering_others(std::map<std::string, NodeRecord>& seen, NodeRecord& self) {
  {
    std::lock_guard lock(mutex_);
    self = record_;
  }
  auto found = lookup(*directory_, self.model_id);
  if (!found && log_) log_("reading the swarm's coverage failed: " + found.error().message);
  keep_newest(seen, found ? std::move(found->records) : std::vector<NodeRecord>{});
  std::vector<NodeRecord> others;
  for (const auto& [peer, r] : seen)
    if (peer != self.peer_id) others.push_back(r);
  return prober_->answering(others);
}

Move Membership::check_move(std::map<std::string, NodeRecord>& seen) {
  NodeRecord self;
  const std::vector<NodeRecord> others = answering_others(seen, self);
  return consider_move(weighed(others), self, options_.rebalance_factor);
}

void Membership::settle(std::map<std::string, NodeRecord>& seen) {
  std::mt19937_64 rng(std::random_device{}());
  const double interval_ms = options_.settle_interval_ms;
  std::uniform_real_distribution<double> period(0.75 * interval_ms, 1.25 * interval_ms);
  // Every round, not only until a quiet one: a node that started in the same second may announce
  // late, and a move under way is carried out between rounds.
  for (uint32_t round = 0; round < options_.settle_rounds; ++round) {
    if (!sleep_ms(static_cast<uint32_t>(period(rng)))) return;
    if (pending_move()) continue;
    NodeRecord self;
    const std::vector<NodeRecord> others = answering_others(seen, self);
    const Span to = settle_span(others, self);
    if (to.begin == self.block_begin && to.end == self.block_end) continue;
    char line[200];
    std::snprintf(line, sizeof line,
                  "joining: nodes that keep their blocks (join priority) serve all of %u:%u, and blocks "
                  "nobody serves remain: moving to %u:%u",
                  self.block_begin, self.block_end, to.begin, to.end);
    if (log_) log_(line);
    std::lock_guard lock(mutex_);
    pending_ = to;
  }
}

void Membership::rebalance_loop() {
  std::map<std::string, NodeRecord> seen;
  settle(seen);
  if (options_.rebalance_interval_s == 0) return;
  std::mt19937_64 rng(std::random_device{}());
  const double interval_ms = options_.rebalance_interval_s * 1000.0;
  std::uniform_real_distribution<double> period(0.75 * interval_ms, 1.25 * interval_ms);
  std::uniform_real_distribution<double> confirm(0.1 * interval_ms, 0.6 * interval_ms);
  while (sleep_ms(static_cast<uint32_t>(period(rng)))) {
    if (pending_move()) continue;  // the node is still carrying out the last decision
    Move first = check_move(seen);
    if (!first.move) continue;
    if (!sleep_ms(static_cast<uint32_t>(confirm(rng)))) break;
    Move second = check_move(seen);
    if (!second.move) {
      if (log_) log_("rebalancing: a move looked useful but no longer does: " + second.reason);
      continue;
    }
    if (log_) log_("rebalancing: " + second.reason);
    std::lock_guard lock(mutex_);
    pending_ = second.to;
  }
}

void Membership::link_loop() {
  std::mt19937_64 rng(std::random_device{}());
  const double interval_ms = options_.announce_interval_s * 1000.0;
  std::uniform_real_distribution<double> period(0.75 * interval_ms, 1.25 * interval_ms);
  std::map<std::string, NodeRecord> seen;
  // Early rounds close together: nodes started together announce within seconds of each other.
  for (uint32_t round = 0; sleep_ms(round == 0 ? 1000 : round == 1 ? 3000 : static_cast<uint32_t>(period(rng)));
       ++round) {
    NodeRecord self;
    {
      std::lock_guard lock(mutex_);
      self = record_;
    }
    auto found = lookup(*directory_, self.model_id);
    if (!found) continue;  // the next round reads again; the figures out stay valid meanwhile
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;  // a read can take seconds: do not hold up the node's stop with probes
    }
    keep_newest(seen, std::move(found->records));
    std::vector<NodeRecord> others;
    for (const auto& [peer, r] : seen) others.push_back(r);
    auto links = measure_links(link_neighbours(self, others, kMaxLinks, rng), *identity_, options_.probe_timeout_ms);
    std::sort(links.begin(), links.end(), [](const LinkRtt& a, const LinkRtt& b) { return a.peer_id < b.peer_id; });
    bool changed = false;
    {
      std::lock_guard lock(mutex_);
      changed = links_changed(links_, links);
      links_ = std::move(links);  // the next refresh carries them in any case
    }
    if (!changed) continue;
    std::lock_guard announcing(announcer_mutex_);
    if (announcer_) announcer_->announce_now();
  }
}

int run_bootstrap_node(const std::string& listen, const JoinOptions& options) {
  auto hp = parse_host_port(listen);
  if (!hp) {
    std::fprintf(stderr, "omni node: --listen %s\n", hp.error().message.c_str());
    return 1;
  }
  DhtOptions dht;
  dht.bind_host = hp->host;
  dht.port = hp->port;
  dht.bootstrap = options.bootstrap;
  dht.lan = options.lan;
  dht.record_ttl_s = options.record_ttl_s;
  auto directory = DhtDirectory::start(dht);
  if (!directory) {
    std::fprintf(stderr, "omni node: %s\n", directory.error().message.c_str());
    return 1;
  }
  std::printf("omni node: bootstrap DHT node listening on udp %s\n",
              HostPort{hp->host, (*directory)->bound_port()}.to_string().c_str());
  std::fflush(stdout);
  for (;;) pause();  // the DHT runs on its own threads until the process is killed
}

}  // namespace omni::swarm
