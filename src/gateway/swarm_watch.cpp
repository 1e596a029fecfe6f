#include "gateway/swarm_watch.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "net/peer_address.h"
#include "swarm/probe.h"
#include "swarm/record.h"

namespace omni::gateway {
namespace {

std::string api_name(const std::string& model_name) {
  const std::string suffix = ".gguf";
  if (model_name.size() > suffix.size() && model_name.ends_with(suffix))
    return model_name.substr(0, model_name.size() - suffix.size());
  return model_name.empty() ? "model" : model_name;
}

}  // namespace

SwarmWatch::SwarmWatch(swarm::Directory* directory, net::Identity identity, SwarmWatchOptions options)
    : directory_(directory), identity_(std::move(identity)), options_(std::move(options)) {
  thread_ = std::thread([this] { loop(); });
}

SwarmWatch::~SwarmWatch() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

bool SwarmWatch::wait_for_read(uint32_t timeout_ms) const {
  std::unique_lock lock(mutex_);
  const uint64_t after = reads_started_;
  return changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return reads_done_ > after; });
}

std::vector<WatchedModel> SwarmWatch::models() const {
  std::lock_guard lock(mutex_);
  return models_;
}

std::optional<WatchedModel> SwarmWatch::model(const std::string& key) const {
  std::lock_guard lock(mutex_);
  for (const auto& m : models_)
    if (m.key == key) return m;
  return std::nullopt;
}

SwarmSnapshot SwarmWatch::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

void SwarmWatch::loop() {
  std::map<std::string, swarm::NodeRecord> seen;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      ++reads_started_;
    }
    refresh(seen);
    std::unique_lock lock(mutex_);
    ++reads_done_;
    changed_.notify_all();
    if (changed_.wait_for(lock, std::chrono::milliseconds(options_.refresh_ms), [&] { return stopping_; })) return;
  }
}

// A fixed peer as a record: what it answered (nothing but its address when it did not).
swarm::NodeRecord answered_record(const net::PeerAddress& peer, const swarm::ProbeResult& p) {
  swarm::NodeRecord r;
  r.peer_id = p.ok ? p.info.peer_id : peer.peer_id;
  r.addresses = {peer.host_port()};
  if (!p.ok) return r;
  r.model_id = swarm::model_key(p.info.model.cid);
  r.model_name = p.info.model.name;
  r.n_layer = p.info.model.n_layer;
  r.block_begin = p.info.block_begin;
  r.block_end = p.info.block_end;
  r.max_sessions = p.info.max_sessions;
  return r;
}

void SwarmWatch::refresh(std::map<std::string, swarm::NodeRecord>& seen) {
  std::vector<swarm::NodeRecord> records;
  std::vector<net::PeerAddress> peers;
  if (directory_) {
    auto found = swarm::lookup(*directory_, "");
    if (found) swarm::keep_newest(seen, std::move(found->records));
    else if (options_.log) options_.log("reading the swarm's directory: " + found.error().message);
    // keep_newest drops expired records only when it reads; a read that failed must not keep them.
    const int64_t now = swarm::unix_now_ms();
    std::erase_if(seen, [now](const auto& entry) { return entry.second.expires_ms <= now; });
    for (const auto& [peer, record] : seen) {
      if (records.size() >= options_.max_nodes) break;
      records.push_back(record);
    }
    for (const auto& r : records) {
      auto address = net::parse_peer_address(r.peer_id + "@" + r.addresses.front());
      peers.push_back(address ? *address : net::PeerAddress{r.peer_id, "invalid", 0, false});
    }
  } else {
    peers.assign(options_.peers.begin(), options_.peers.begin() + std::min(options_.peers.size(), options_.max_nodes));
  }
  const auto probes = swarm::probe_nodes(peers, identity_, options_.probe_timeout_ms);
  if (!directory_)
    for (size_t i = 0; i < peers.size(); ++i) records.push_back(answered_record(peers[i], probes[i]));

  // Models by key, with a name unique among them.
  std::map<std::string, WatchedModel> by_key;
  for (const auto& r : records) {
    if (r.n_layer == 0) continue;  // a fixed peer that did not answer: no model known
    WatchedModel& m = by_key[r.model_id];
    if (m.key.empty()) {
      m.key = r.model_id;
      m.name = api_name(r.model_name);
      m.n_layer = r.n_layer;
      m.coverage.assign(r.n_layer, 0);
    }
    if (m.cid.empty()) m.cid = swarm::model_cid_of_key(r.model_id);
    if (!r.model_cid.empty() && r.model_cid == m.cid) m.shared = true;
  }
  std::set<std::string> names;
  for (auto& [key, m] : by_key)
    if (!names.insert(m.name).second) m.name += "-" + key.substr(0, 8);

  SwarmSnapshot snapshot;
  for (size_t i = 0; i < records.size(); ++i) {
    const swarm::NodeRecord& r = records[i];
    const swarm::ProbeResult& p = probes[i];
    SwarmNode n;
    n.peer_id = r.peer_id;
    n.address = r.addresses.front();
    n.alive = r.n_layer > 0 && p.ok && swarm::model_key(p.info.model.cid) == r.model_id;
    n.route = peers[i].relayed ? "relay" : "direct";
    if (options_.reputation)
      if (auto known = options_.reputation->find(r.peer_id)) {
        n.reputation = known->score(swarm::unix_now_s(), options_.reputation->half_life_s());
        n.excluded_reason = known->excluded_reason;
        n.excluded_since = known->excluded_since_s;
      }
    if (r.n_layer == 0) {
      snapshot.nodes.push_back(std::move(n));
      continue;
    }
    WatchedModel& m = by_key[r.model_id];
    n.model = m.name;
    n.block_begin = n.alive ? p.info.block_begin : r.block_begin;
    n.block_end = n.alive ? p.info.block_end : r.block_end;
    n.throughput_tps = r.span_tps();
    n.sessions = n.alive ? p.info.active_sessions : 0;
    n.max_sessions = n.alive ? p.info.max_sessions : r.max_sessions;
    n.rtt_ms = n.alive ? p.rtt_s * 1000 : 0;
    if (n.alive)
      for (uint32_t b = n.block_begin; b < std::min(n.block_end, m.n_layer); ++b) ++m.coverage[b];
    snapshot.nodes.push_back(std::move(n));
  }
  std::vector<WatchedModel> models;
  for (auto& [key, m] : by_key) {
    snapshot.models.push_back(m);
    models.push_back(std::move(m));
  }
  std::lock_guard lock(mutex_);
  models_ = std::move(models);
  snapshot_ = std::move(snapshot);
}

}  // namespace omni::gateway
