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

}  // namespace omni::swarm
