#include "swarm/dht_directory.h"

#include <opendht.h>
#include <opendht/peer_discovery.h>

#include <chrono>
#include <future>
#include <mutex>

#include "base/parse.h"

namespace omni::swarm {
namespace {

// Our value type id (any 16-bit number not used by OpenDHT's default types, which are 0-9).
constexpr dht::ValueType::Id kRecordType = 0x4f4d;

dht::InfoHash key_of(const std::string& model_id) {
  return dht::InfoHash::get(model_id.empty() ? std::string("omni/v1/nodes") : "omni/v1/model/" + model_id);
}

dht::InfoHash provider_key_of(const std::string& model_cid) {
  return dht::InfoHash::get("omni/v1/providers/" + model_cid);
}

dht::Value::Id value_id_of(const std::string& peer_id) {
  auto h = dht::InfoHash::get("omni/v1/value/" + peer_id);
  dht::Value::Id id = 0;
  for (int i = 0; i < 8; ++i) id = id << 8 | h[i];
  return id;
}

// The value's bytes verify as a record (the clock is the storing node's).
bool acceptable(const std::shared_ptr<dht::Value>& v) {
  return v && verify_record(v->data, unix_now_ms()).ok();
}

}  // namespace

struct DhtDirectory::Impl {
  dht::DhtRunner runner;
  DhtOptions options;
  std::mutex seq_mutex;
  uint64_t seq = 0;

  // Puts `bytes` under each of `keys` as a fresh value and waits for every put (timeout_ms each).
  Result<void> put(const std::vector<dht::InfoHash>& keys, const std::string& peer_id,
                   const std::vector<uint8_t>& bytes, bool record_type);
  // Whatever a get of `key` found within timeout_ms.
  Result<std::vector<std::vector<uint8_t>>> get(const dht::InfoHash& key);
};

Result<void> DhtDirectory::Impl::put(const std::vector<dht::InfoHash>& keys, const std::string& peer_id,
                                     const std::vector<uint8_t>& bytes, bool record_type) {
  try {
    const auto timeout = std::chrono::milliseconds(options.timeout_ms);
    std::vector<std::future<bool>> done;
    for (const auto& key : keys) {
      auto value = std::make_shared<dht::Value>(bytes);
      uint64_t n = 0;
      {
        std::lock_guard lock(seq_mutex);  // a node's record and provider announcers run on two threads
        n = ++seq;
      }
      // A fresh id per refresh: OpenDHT's edit path (same id, new data) proved unreliable (puts
      // timing out), so old values simply expire after the type's TTL and readers keep the newest
      // record of each peer. With a refresh every interval_s, a key holds about
      // nodes x ttl / interval values.
      value->id = value_id_of(peer_id + "/" + std::to_string(unix_now_ms()) + "/" + std::to_string(n));
      if (record_type) value->type = kRecordType;
      value->seq = static_cast<uint16_t>(n);
      auto promise = std::make_shared<std::promise<bool>>();
      done.push_back(promise->get_future());
      runner.put(key, value, [promise](bool ok) { promise->set_value(ok); });
    }
    for (auto& f : done) {
      if (f.wait_for(timeout) != std::future_status::ready)
        return Error{ErrorCode::DeadlineExceeded, "DHT put timed out"};
      if (!f.get()) return Error{ErrorCode::Unavailable, "DHT put failed (no DHT node reachable? check --bootstrap)"};
    }
    return {};
  } catch (const std::exception& e) {
    return Error{ErrorCode::Internal, std::string("DHT put: ") + e.what()};
  }
}

DhtDirectory::DhtDirectory(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DhtDirectory::~DhtDirectory() {
  try {
    impl_->runner.join();
  } catch (const std::exception&) {
    // Shutting down: nothing left to report to.
  }
}

Result<std::unique_ptr<DhtDirectory>> DhtDirectory::start(const DhtOptions& options) {
  std::vector<std::pair<std::string, std::string>> boots;
  for (const auto& b : options.bootstrap) {
    auto hp = parse_host_port(b);
    if (!hp) return hp.error().with_context("--bootstrap");
    boots.emplace_back(hp->host, std::to_string(hp->port));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    dht::DhtRunner::Config config;
    config.threaded = true;
    config.peer_discovery = options.lan;
    config.peer_publish = options.lan;
    if (!options.bind_host.empty()) {
      auto addrs = dht::SockAddr::resolve(options.bind_host, std::to_string(options.port));
      for (auto& a : addrs) {
        if (a.getFamily() == AF_INET && !config.bind4) config.bind4 = a;
        if (a.getFamily() == AF_INET6 && !config.bind6) config.bind6 = a;
      }
      if (!config.bind4 && !config.bind6)
        return Error{ErrorCode::InvalidArgument, "cannot resolve DHT address '" + options.bind_host + "'"};
      // Our own socket on exactly these addresses: DhtRunner::run(port, ...) would add the other
      // family's any-address ([::] or 0.0.0.0) to a bind of one host.
      dht::DhtRunner::Context context;
      context.sock = std::make_unique<dht::net::UdpSocket>(config.bind4, config.bind6);
      impl->runner.run(config, std::move(context));
    } else {
      impl->runner.run(options.port, config);
    }
    const auto ttl = std::chrono::seconds(std::max<uint32_t>(options.record_ttl_s, 5));
    if (options.custom_type) impl->runner.registerType(dht::ValueType(
        kRecordType, "omni-node-record", ttl,
        [](dht::InfoHash, std::shared_ptr<dht::Value>& v, const dht::InfoHash&, const dht::SockAddr&) {
          return acceptable(v);
        },
        [](dht::InfoHash, const std::shared_ptr<dht::Value>& old_value, std::shared_ptr<dht::Value>& new_value,
           const dht::InfoHash&, const dht::SockAddr&) {
          if (!acceptable(new_value)) return false;
          // Only the same peer may replace its value (the id is public; the key is not).
          auto old_record = verify_record(old_value->data, 0);
          auto new_record = verify_record(new_value->data, 0);
          return !old_record || (new_record && old_record->peer_id == new_record->peer_id);
        }));
    for (auto& [host, port] : boots) impl->runner.bootstrap(host, port);
  } catch (const std::exception& e) {
    return Error{ErrorCode::Internal, std::string("starting the DHT node: ") + e.what()};
  }
  return std::unique_ptr<DhtDirectory>(new DhtDirectory(std::move(impl)));
}

uint16_t DhtDirectory::bound_port() const {
  const uint16_t v4 = impl_->runner.getBoundPort(AF_INET);
  return v4 != 0 ? v4 : impl_->runner.getBoundPort(AF_INET6);  // bound to an IPv6 host only
}

size_t DhtDirectory::good_nodes() const {
  try {
    return impl_->runner.getNodesStats(AF_INET).good_nodes + impl_->runner.getNodesStats(AF_INET6).good_nodes;
  } catch (const std::exception&) {
    return 0;
  }
}

Result<void> DhtDirectory::announce(const std::string& model_id, const std::string& peer_id,
                                    std::vector<uint8_t> signed_record) {
  return impl_->put({key_of(model_id), key_of(std::string())}, peer_id, signed_record, impl_->options.custom_type);
}

Result<void> DhtDirectory::provide(const std::string& model_cid, const std::string& peer_id,
                                   std::vector<uint8_t> signed_record) {
  // Provider records always use the default value type: the custom type's policies accept node records only.
  return impl_->put({provider_key_of(model_cid)}, peer_id, signed_record, false);
}

Result<std::vector<std::vector<uint8_t>>> DhtDirectory::fetch(const std::string& model_id) {
  return impl_->get(key_of(model_id));
}

Result<std::vector<std::vector<uint8_t>>> DhtDirectory::fetch_providers(const std::string& model_cid) {
  return impl_->get(provider_key_of(model_cid));
}

Result<std::vector<std::vector<uint8_t>>> DhtDirectory::Impl::get(const dht::InfoHash& key) {
  try {
    auto promise = std::make_shared<std::promise<void>>();
    auto values = std::make_shared<std::vector<std::vector<uint8_t>>>();
    auto mutex = std::make_shared<std::mutex>();
    runner.get(
        key,
        [values, mutex](const std::vector<std::shared_ptr<dht::Value>>& vs) {
          std::lock_guard lock(*mutex);
          for (auto& v : vs)
            if (v) values->push_back(v->data);
          return true;
        },
        [promise](bool) { promise->set_value(); });
    // A search that has not converged by the deadline still gives what it found: records are
    // verified one by one, and a partial view only makes a joining node or a route less informed.
    promise->get_future().wait_for(std::chrono::milliseconds(options.timeout_ms));
    std::lock_guard lock(*mutex);
    return *values;
  } catch (const std::exception& e) {
    return Error{ErrorCode::Internal, std::string("DHT get: ") + e.what()};
  }
}

}  // namespace omni::swarm
