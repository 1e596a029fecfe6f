#include "swarm/probe.h"

#include <kj/async-io.h>

#include <chrono>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/tls.h"

namespace omni::swarm {

std::vector<ProbeResult> probe_nodes(const std::vector<net::PeerAddress>& peers, const net::Identity& identity,
                                     uint32_t timeout_ms,
                                     const std::function<bool(const std::vector<ProbeResult>&)>& enough,
                                     uint32_t grace_ms) {
  std::vector<ProbeResult> results(peers.size());
  if (peers.empty()) return results;
  auto tls = net::TlsContext::create(identity);
  if (!tls) {
    for (auto& r : results) r.error = tls.error().message;
    return results;
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto io = kj::setupAsyncIo();
    auto& timer = io.provider->getTimer();
    const auto timeout = timeout_ms * kj::MILLISECONDS;
    auto satisfied = kj::newPromiseAndFulfiller<void>();
    auto check = [&] {
      if (enough && satisfied.fulfiller->isWaiting() && enough(results)) satisfied.fulfiller->fulfill();
    };
    kj::Vector<kj::Promise<void>> all;
    for (size_t i = 0; i < peers.size(); ++i) {
      auto& result = results[i];
      auto probe =
          net::NodeConnection::connect(*io.provider, **tls, peers[i], {}, timeout)
              .then([&result, &timer, timeout](kj::Own<net::NodeConnection> c) {
                auto t0 = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
                auto request = c->node().infoRequest();
                return net::with_timeout(timer, timeout, "info", request.send())
                    .then([&result, t0](capnp::Response<proto::Node::InfoResults> response) {
                      result.rtt_s =
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - *t0).count();
                      result.info = net::read_node_info(response.getInfo());
                      result.ok = true;
                    })
                    .attach(kj::mv(c));
              })
              .catch_([&result](kj::Exception&& e) { result.error = net::to_error(e).message; })
              .then([&check] { check(); });
      // Eagerly: a kj continuation otherwise runs only when the joined promise is read, i.e. after
      // the slowest probe, which would time every answer by the slowest and defeat `enough`.
      all.add(kj::mv(probe).eagerlyEvaluate(nullptr));
    }
    auto cut = kj::mv(satisfied.promise).then([&timer, grace_ms] {
      return timer.afterDelay(grace_ms * kj::MILLISECONDS);
    });
    kj::joinPromises(all.releaseAsArray()).exclusiveJoin(kj::mv(cut)).wait(io.waitScope);
    for (auto& r : results)
      if (!r.ok && r.error.empty()) {
        r.cut_short = true;
        r.error = "no answer yet when enough nodes had answered";
      }
  })) {
    for (auto& r : results)
      if (!r.ok && r.error.empty()) r.error = net::to_error(*e).message;
  }
  return results;
}

RecordProber::RecordProber(net::Identity identity, net::ModelIdentity model, Options options)
    : identity_(std::move(identity)), model_(std::move(model)), options_(options) {}

std::vector<NodeRecord> RecordProber::answering(const std::vector<NodeRecord>& records,
                                                 std::vector<std::string>* why) {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(verdicts_, [now](const auto& entry) { return entry.second.until <= now; });
  std::vector<std::string> keys(records.size());
  std::vector<size_t> unknown;
  std::vector<net::PeerAddress> addresses;
  for (size_t i = 0; i < records.size(); ++i) {
    const NodeRecord& r = records[i];
    if (r.addresses.empty()) continue;
    // Per record issued: a node found down while it moved (its listener restarts) is probed again
    // once its next record shows.
    keys[i] = r.peer_id + "@" + r.addresses.front() + "#" + std::to_string(r.seq);
    if (verdicts_.count(keys[i])) continue;
    auto address = net::parse_peer_address(r.peer_id + "@" + r.addresses.front());
    if (!address) {
      Verdict& v = verdicts_[keys[i]];
      v.error = "bad address: " + address.error().message;
      v.until = now + options_.failed_ttl;
      continue;
    }
    unknown.push_back(i);
    addresses.push_back(*address);
  }
  const auto probes = probe_nodes(addresses, identity_, options_.timeout_ms);
  const auto probed_at = std::chrono::steady_clock::now();
  for (size_t k = 0; k < unknown.size(); ++k) {
    const ProbeResult& p = probes[k];
    Verdict v;
    if (!p.ok)
      v.error = "no answer: " + p.error;
    else if (!(p.info.model == model_))
      v.error = "serves another model";
    else if (p.info.block_begin >= p.info.block_end || p.info.block_end > model_.n_layer)
      v.error = "answers with no valid block range";
    else {
      v.ok = true;
      v.block_begin = p.info.block_begin;
      v.block_end = p.info.block_end;
    }
    v.until = probed_at + (v.ok ? options_.ok_ttl : options_.failed_ttl);
    if (options_.reputation)
      (void)options_.reputation->record(records[unknown[k]].peer_id,
                                        v.ok ? PeerEvent::Answered : PeerEvent::Unreachable, unix_now_s());
    verdicts_[keys[unknown[k]]] = std::move(v);
  }
  std::vector<NodeRecord> out;
  for (size_t i = 0; i < records.size(); ++i) {
    const NodeRecord& r = records[i];
    if (keys[i].empty()) {
      if (why) why->push_back("node " + r.peer_id + " lists no address");
      continue;
    }
    const Verdict& v = verdicts_[keys[i]];
    if (v.ok) {
      out.push_back(r);
      out.back().block_begin = v.block_begin;
      out.back().block_end = v.block_end;
    } else if (why)
      why->push_back("node " + r.peer_id + " at " + r.addresses.front() + " is not counted: " + v.error);
  }
  return out;
}

}  // namespace omni::swarm
