#include "swarm/spot_check.h"

#include <kj/async-io.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "net/errors.h"
#include "net/forward_attestation.h"
#include "net/node_connection.h"
#include "net/tls.h"

namespace omni::swarm {
namespace {

struct HopInput {
  std::vector<int32_t> tokens;  // hop 0
  std::vector<uint8_t> hidden;  // later hops, in the session's encoding
  uint32_t rows = 0;
  uint32_t output_last = 0;
};

struct SessionRun {
  std::vector<std::vector<uint8_t>> outputs;
  std::vector<net::ForwardAttestation> attestations;
};

class Checker {
 public:
  Checker(const net::Identity& identity, const SpotCheckOptions& options) : options_(options) {
    auto tls = net::TlsContext::create(identity);
    if (tls) tls_ = std::move(*tls);
    else error_ = tls.error();
  }

  Result<SpotCheckResult> run(const std::vector<CheckHop>& route, const std::vector<Replica>& replicas,
                              const std::vector<std::vector<int32_t>>& calls) {
    if (error_) return *error_;
    SpotCheckResult result;
    std::vector<HopInput> inputs;
    uint32_t positions = 0;
    for (const auto& c : calls) {
      inputs.push_back({c, {}, static_cast<uint32_t>(c.size()), 0});
      positions += static_cast<uint32_t>(c.size());
    }
    for (size_t h = 0; h < route.size(); ++h) {
      const CheckHop& hop = route[h];
      const bool last = h + 1 == route.size();
      for (auto& in : inputs) in.output_last = last ? 1 : in.rows;
      auto serves = [&](const Replica& r) {
        return r.address.peer_id != hop.node.address.peer_id && r.block_begin <= hop.block_begin &&
               hop.block_end <= r.block_end;
      };
      std::vector<const Replica*> others;
      for (const auto& r : replicas)
        if (serves(r)) others.push_back(&r);
      const std::string where = "blocks [" + std::to_string(hop.block_begin) + ", " + std::to_string(hop.block_end) + ")";
      std::string failures;  // of the runs that did not complete, for the unresolved line
      auto first = run_session(hop.node, hop, inputs, positions);
      // The route's node, then each replica in turn until two runs agree (or a third outvotes one).
      std::vector<std::pair<const Replica*, SessionRun>> runs;
      if (first) runs.emplace_back(&hop.node, std::move(*first));
      else failures += "; " + first.error().message;
      std::optional<SessionRun> agreed;
      for (const Replica* r : others) {
        if (agreed) break;
        auto run = run_session(*r, hop, inputs, positions);
        if (!run) {  // that replica is unreachable or refuses: try the next one
          failures += "; " + run.error().message;
          continue;
        }
        for (auto& [node, prior] : runs) {
          const size_t at = first_difference(prior, *run);
          if (at == kSame) {
            agreed = *run;
            result.agreed.push_back(node->address.peer_id);
            result.agreed.push_back(r->address.peer_id);
            break;
          }
        }
        runs.emplace_back(r, std::move(*run));
      }
      if (!agreed) {
        result.unresolved.push_back(where + ": " + std::to_string(runs.size()) + " runs, no two agree" + failures);
        return result;
      }
      // Everyone who ran and differs from the majority is outvoted at its first differing call.
      for (auto& [node, run] : runs) {
        const size_t at = first_difference(*agreed, run);
        if (at == kSame) continue;
        FaultReport report;
        report.encoding = options_.encoding;
        for (size_t i = 0; i <= at; ++i)
          report.calls.push_back({inputs[i].tokens, inputs[i].hidden, inputs[i].output_last, run.attestations[i]});
        report.witness = agreed->attestations[at];
        result.faults.push_back(std::move(report));
      }
      for (size_t i = 0; i < inputs.size(); ++i) {
        inputs[i].tokens.clear();
        inputs[i].hidden = agreed->outputs[i];
        inputs[i].rows = inputs[i].output_last;
      }
    }
    result.last_row = inputs.back().hidden;
    return result;
  }

 private:
  static constexpr size_t kSame = SIZE_MAX;

  static size_t first_difference(const SessionRun& a, const SessionRun& b) {
    for (size_t i = 0; i < a.outputs.size() && i < b.outputs.size(); ++i)
      if (a.outputs[i] != b.outputs[i]) return i;
    return a.outputs.size() == b.outputs.size() ? kSame : std::min(a.outputs.size(), b.outputs.size());
  }

  // The calls on a fresh direct session of `node` for the hop's blocks; every reply's attestation
  // must verify as the node's and describe the call, or the run counts as failed.
  Result<SessionRun> run_session(const Replica& node, const CheckHop& hop, const std::vector<HopInput>& inputs,
                                 uint32_t positions) {
    SessionRun out;
    Result<void> status;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { status = run_calls(node, hop, inputs, positions, out); })) {
      connections_.erase(node.address.to_string());  // the next check connects afresh
      return net::to_error(*e).with_context("node " + node.address.host_port());
    }
    if (!status) {
      connections_.erase(node.address.to_string());
      return status.error();
    }
    return out;
  }

  Result<void> run_calls(const Replica& node, const CheckHop& hop, const std::vector<HopInput>& inputs,
                         uint32_t positions, SessionRun& out) {
    const std::string key = node.address.to_string();
    auto cached = connections_.find(key);
    if (cached == connections_.end()) {
      auto fresh = net::NodeConnection::connect(*io_.provider, *tls_, node.address,
                                                {std::string("hidden-") + net::hidden_encoding_name(options_.encoding)},
                                                options_.connect_timeout_s * kj::SECONDS)
                       .wait(io_.waitScope);
      cached = connections_.emplace(key, kj::mv(fresh)).first;
    }
    net::NodeConnection* connection = cached->second.get();
    if (!(connection->info().model == options_.model))
      return Error{ErrorCode::InvalidArgument, "node " + node.address.host_port() + " serves another model"};
    auto open = connection->node().openSessionRequest();
    auto p = open.initParams();
    p.setBlockBegin(hop.block_begin);
    p.setBlockEnd(hop.block_end);
    p.setMaxLength(positions);
    p.setHiddenFormat(static_cast<proto::HiddenFormat>(options_.encoding));
    auto& timer = io_.provider->getTimer();
    const auto timeout = options_.call_timeout_s * kj::SECONDS;
    auto session = net::with_timeout(timer, timeout, "opening a check session", open.send()).wait(io_.waitScope).getSession();
    uint64_t position = 0;
    for (const auto& in : inputs) {
      auto req = session.forwardRequest();
      auto input = req.initInput();
      net::Sha256 input_digest;
      if (!in.tokens.empty()) {
        auto list = input.initInput().initTokens(static_cast<unsigned>(in.tokens.size()));
        for (unsigned i = 0; i < in.tokens.size(); ++i) list.set(i, in.tokens[i]);
        input_digest = net::tokens_digest(in.tokens);
      } else {
        auto hidden = input.initInput().initHidden();
        hidden.setFormat(static_cast<proto::HiddenFormat>(options_.encoding));
        hidden.setNTokens(in.rows);
        hidden.setNEmbd(options_.model.n_embd);
        hidden.setData(kj::arrayPtr(in.hidden.data(), in.hidden.size()));
        input_digest = net::hidden_digest(options_.encoding, in.hidden);
      }
      input.setOutputLast(in.output_last);
      auto response = net::with_timeout(timer, timeout, "a check call", req.send()).wait(io_.waitScope);
      auto data = response.getOutput().getHidden().getData();
      std::vector<uint8_t> rows(data.begin(), data.end());
      auto a = net::read_attestation(response.getOutput().getAttestation(), options_.model, hop.block_begin, hop.block_end);
      if (!a) return a.error().with_context("node " + node.address.host_port());
      if (auto v = net::verify_attestation(*a); !v) return v.error();
      if (a->peer_id() != connection->peer_id() || a->position != position || a->input_sha256 != input_digest ||
          a->output_rows != in.output_last || a->output_sha256 != net::hidden_digest(options_.encoding, rows))
        return Error{ErrorCode::InvalidArgument,
                     "node " + node.address.host_port() + " signed an attestation that does not describe the call"};
      out.outputs.push_back(std::move(rows));
      out.attestations.push_back(*a);
      position += in.rows;
    }
    return {};
  }

  SpotCheckOptions options_;
  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  std::shared_ptr<net::TlsContext> tls_;
  std::optional<Error> error_;
  // Kept between checks: a check then costs its calls, not a TLS handshake per node. Declared
  // last: dropped before the event loop they live on.
  std::map<std::string, kj::Own<net::NodeConnection>> connections_;
};

}  // namespace

struct SpotChecker::Impl {
  std::mutex mutex;
  std::condition_variable wake;
  std::function<void(Checker&)> job;  // set: the thread runs it, then clears it
  bool stopping = false;
  std::thread thread;
};

SpotChecker::SpotChecker(net::Identity identity, SpotCheckOptions options) : impl_(std::make_unique<Impl>()) {
  // Its own thread: a kj event loop per thread, and the caller's pipeline holds the caller's.
  impl_->thread = std::thread([impl = impl_.get(), identity = std::move(identity), options = std::move(options)] {
    Checker checker(identity, options);
    std::unique_lock lock(impl->mutex);
    for (;;) {
      impl->wake.wait(lock, [impl] { return impl->stopping || impl->job; });
      if (impl->stopping) return;
      impl->job(checker);
      impl->job = nullptr;
      impl->wake.notify_all();
    }
  });
}

SpotChecker::~SpotChecker() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

Result<SpotCheckResult> SpotChecker::check(const std::vector<CheckHop>& route, const std::vector<Replica>& replicas,
                                           const std::vector<std::vector<int32_t>>& calls) {
  if (route.empty() || calls.empty()) return Error{ErrorCode::InvalidArgument, "a spot check needs a route and calls"};
  Result<SpotCheckResult> result = Error{ErrorCode::Internal, "the check did not run"};
  std::unique_lock lock(impl_->mutex);
  // The job runs under the mutex on the checker's thread (the caller waits for it anyway).
  impl_->job = [&](Checker& checker) { result = checker.run(route, replicas, calls); };
  impl_->wake.notify_all();
  impl_->wake.wait(lock, [this] { return !impl_->job; });
  return result;
}

}  // namespace omni::swarm
