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
#include "swarm/replay_plan.h"

namespace omni::swarm {
namespace {

struct HopInput {
  std::vector<int32_t> tokens;  // hop 0
  std::vector<uint8_t> hidden;  // later hops, in the session's encoding
  uint32_t rows = 0;
  uint32_t output_last = 0;
  bool per_token = false;  // ForwardInput.perTokenSums: each row with a one-token call's bits
};


struct SessionRun {
  std::vector<std::vector<uint8_t>> outputs;
  std::vector<net::ForwardAttestation> attestations;
};

// A node's check session for one hop's range and its answers so far.
struct CheckSession {
  proto::Session::Client session = nullptr;
  SessionRun run;
};

// One node's run of a hop within a check.
struct NodeRun {
  const Replica* node = nullptr;
  Result<SessionRun> result = Error{ErrorCode::Internal, "the run did not happen"};
};

class Checker {
 public:
  Checker(const net::Identity& identity, const SpotCheckOptions& options) : options_(options) {
    auto tls = net::TlsContext::create(identity);
    if (tls) tls_ = std::move(*tls);
    else error_ = tls.error();
  }

  Result<SpotCheckResult> run(const std::vector<CheckHop>& route, const std::vector<Replica>& replicas,
                              const std::vector<std::vector<int32_t>>& history) {
    if (error_) return *error_;
    SpotCheckResult result;
    std::vector<HopInput> inputs;
    for (auto& c : plan(history, result.own_batches)) {
      const auto rows = static_cast<uint32_t>(c.tokens.size());
      inputs.push_back({std::move(c.tokens), {}, rows, 0, c.per_token});
    }
    uint32_t positions = 0;
    for (const auto& in : inputs) positions += in.rows;
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
      std::vector<std::pair<const Replica*, SessionRun>> runs;
      std::optional<SessionRun> agreed;
      auto take = [&](NodeRun& run) {
        if (!run.result) {  // that node is unreachable or refuses: the others decide
          failures += "; " + run.result.error().message;
          return;
        }
        if (!agreed)
          for (auto& [node, prior] : runs)
            if (first_difference(prior, *run.result) == kSame) {
              agreed = *run.result;
              result.agreed.push_back(node->address.peer_id);
              result.agreed.push_back(run.node->address.peer_id);
              break;
            }
        runs.emplace_back(run.node, std::move(*run.result));
      };
      // The route's node and the first replica at once; then each further replica in turn until two
      // runs agree (or a third outvotes one).
      {
        NodeRun own{&hop.node}, second{others.empty() ? nullptr : others.front()};
        auto both = kj::heapArrayBuilder<kj::Promise<void>>(second.node ? 2 : 1);
        both.add(run_node(hop.node, hop, inputs, positions, own));
        if (second.node) both.add(run_node(*second.node, hop, inputs, positions, second));
        kj::joinPromises(both.finish()).wait(io_.waitScope);
        take(own);
        if (second.node) take(second);
      }
      for (size_t i = 1; i < others.size() && !agreed; ++i) {
        NodeRun next{others[i]};
        run_node(*others[i], hop, inputs, positions, next).wait(io_.waitScope);
        take(next);
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

  // Connects to `nodes` ahead of their first check (failures are left for the check to meet).
  void connect(const std::vector<Replica>& nodes) {
    if (error_) return;
    auto all = kj::heapArrayBuilder<kj::Promise<void>>(nodes.size());
    for (const auto& n : nodes)
      all.add(connection(n).ignoreResult().catch_([this, key = n.address.to_string()](kj::Exception&&) {
        drop_node(key);
      }));
    kj::joinPromises(all.finish()).wait(io_.waitScope);
  }

 private:
  static constexpr size_t kSame = SIZE_MAX;

  static size_t first_difference(const SessionRun& a, const SessionRun& b) {
    for (size_t i = 0; i < a.outputs.size() && i < b.outputs.size(); ++i)
      if (a.outputs[i] != b.outputs[i]) return i;
    return a.outputs.size() == b.outputs.size() ? kSame : std::min(a.outputs.size(), b.outputs.size());
  }

  // The calls the check sends (hop 0's): the session's calls before the last as plan_replay sends
  // them (replay_plan.h: its one-token calls as per-token calls, a trip per max_batch rows), then
  // the last call as it was made. The nodes' caches then hold the bits the route's do, so the
  // route's result is comparable: `own`, false only when a batch over max_batch had to be cut.
  std::vector<ReplayCall> plan(const std::vector<std::vector<int32_t>>& history, bool& own) const {
    std::vector<KeptCall> kept;
    kept.reserve(history.size());
    for (size_t i = 0; i + 1 < history.size(); ++i) kept.push_back({history[i], false});
    bool cut = false;
    auto calls = plan_replay(kept, std::max<size_t>(2, options_.max_batch), &cut);
    own = !cut;
    calls.push_back({history.back(), false});
    return calls;
  }

  kj::Promise<net::NodeConnection*> connection(const Replica& node) {
    const std::string key = node.address.to_string();
    auto cached = connections_.find(key);
    if (cached != connections_.end()) return cached->second.get();
    return net::NodeConnection::connect(*io_.provider, *tls_, node.address,
                                        {std::string("hidden-") + net::hidden_encoding_name(options_.encoding)},
                                        options_.connect_timeout_s * kj::SECONDS)
        .then([this, key](kj::Own<net::NodeConnection> fresh) {
          auto& slot = connections_[key];
          if (!slot) slot = kj::mv(fresh);  // a connection made meanwhile by another run stays
          return slot.get();
        });
  }

  // Forgets a node's connection (the next check connects afresh).
  void drop_node(const std::string& address) { connections_.erase(address); }

  // Runs the hop's calls on a fresh direct session of `node`; every reply's attestation must verify
  // as the node's and describe the call, or the run fails. Never rejects: the outcome goes to `out`.
  kj::Promise<void> run_node(const Replica& node, const CheckHop& hop, const std::vector<HopInput>& inputs,
                             uint32_t positions, NodeRun& out) {
    return connection(node)
        .then([this, &node, &hop, positions](net::NodeConnection* connection) {
          if (!(connection->info().model == options_.model))
            net::throw_rpc_error(ErrorCode::InvalidArgument, "node " + node.address.host_port() + " serves another model");
          auto open = connection->node().openSessionRequest();
          auto p = open.initParams();
          p.setBlockBegin(hop.block_begin);
          p.setBlockEnd(hop.block_end);
          p.setMaxLength(positions);
          p.setHiddenFormat(static_cast<proto::HiddenFormat>(options_.encoding));
          return net::with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                   "opening a check session", open.send());
        })
        .then([this, &node, &hop, &inputs, &out](capnp::Response<proto::Node::OpenSessionResults>&& opened) {
          auto state = kj::heap<CheckSession>();
          state->session = opened.getSession();
          auto& s = *state;
          return feed(node, hop, inputs, s).then([&out, state = kj::mv(state)]() mutable { out.result = state->run; });
        })
        .catch_([this, &node, &out](kj::Exception&& e) {
          drop_node(node.address.to_string());
          out.result = net::to_error(e).with_context("node " + node.address.host_port());
        });
  }

  // Sends `session` the inputs from call `c` on, one after another (a session runs one call at a
  // time), checking every reply's attestation. Throws on any failure.
  kj::Promise<void> feed(const Replica& node, const CheckHop& hop, const std::vector<HopInput>& inputs,
                         CheckSession& session, size_t c = 0, uint64_t position = 0) {
    if (c == inputs.size()) return kj::READY_NOW;
    auto connection = connections_.find(node.address.to_string());
    if (connection == connections_.end())
      net::throw_rpc_error(ErrorCode::Unavailable, "no connection to node " + node.address.host_port());
    const std::string peer = connection->second->peer_id();
    const HopInput& in = inputs[c];
    auto req = session.session.forwardRequest();
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
    input.setPerTokenSums(in.per_token);
    return net::with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS, "a check call", req.send())
        .then([this, &node, &hop, &inputs, &session, peer, position, input_digest,
               c](capnp::Response<proto::Session::ForwardResults>&& response) {
          const HopInput& in = inputs[c];
          auto data = response.getOutput().getHidden().getData();
          std::vector<uint8_t> rows(data.begin(), data.end());
          auto a = net::read_attestation(response.getOutput().getAttestation(), options_.model, hop.block_begin,
                                         hop.block_end);
          if (!a) net::throw_rpc_error(a.error().with_context("node " + node.address.host_port()));
          if (auto v = net::verify_attestation(*a); !v) net::throw_rpc_error(v.error());
          if (a->peer_id() != peer || a->position != position || a->input_sha256 != input_digest ||
              a->output_rows != in.output_last || a->per_token_sums != in.per_token ||
              a->output_sha256 != net::hidden_digest(options_.encoding, rows))
            net::throw_rpc_error(ErrorCode::InvalidArgument, "node " + node.address.host_port() +
                                                                 " signed an attestation that does not describe the call");
          session.run.outputs.push_back(std::move(rows));
          session.run.attestations.push_back(*a);
          return feed(node, hop, inputs, session, c + 1, position + in.rows);
        });
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

  // Runs `j` on the checker's thread after the job before it; waits for it when `wait`.
  void submit(std::function<void(Checker&)> j, bool wait) {
    std::unique_lock lock(mutex);
    wake.wait(lock, [this] { return !job; });
    job = std::move(j);
    wake.notify_all();
    if (wait) wake.wait(lock, [this] { return !job; });
  }
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
    std::unique_lock lock(impl_->mutex);
    impl_->wake.wait(lock, [this] { return !impl_->job; });  // a connect() under way ends first
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

void SpotChecker::connect(std::vector<Replica> nodes) {
  impl_->submit([nodes = std::move(nodes)](Checker& checker) { checker.connect(nodes); }, false);
}

Result<SpotCheckResult> SpotChecker::check(const std::vector<CheckHop>& route, const std::vector<Replica>& replicas,
                                           const std::vector<std::vector<int32_t>>& history) {
  if (route.empty() || history.empty() || history.back().empty())
    return Error{ErrorCode::InvalidArgument, "a spot check needs a route and calls"};
  Result<SpotCheckResult> result = Error{ErrorCode::Internal, "the check did not run"};
  // The job runs under the mutex on the checker's thread (the caller waits for it anyway).
  impl_->submit([&](Checker& checker) { result = checker.run(route, replicas, history); }, true);
  return result;
}

}  // namespace omni::swarm
