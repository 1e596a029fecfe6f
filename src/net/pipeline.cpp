#include "net/pipeline.h"

#include <kj/async-io.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>

#include "net/errors.h"
#include "net/identity.h"
#include "net/node_connection.h"
#include "net/node_info.h"
#include "net/request_validation.h"
#include "net/tls.h"
#include "net/work_receipt.h"

namespace omni::net {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kPromptBatch = 512;  // as the local path: prompt batches change rounding, keep them equal

class LocalPipeline final : public Pipeline {
 public:
  LocalPipeline(std::unique_ptr<model::Session> session, kernels::ThreadPool& pool)
      : session_(std::move(session)), pool_(pool) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return session_->forward(tokens, {}, model::Output::LastLogits, logits, pool_);
  }
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return session_->forward(tokens, {}, model::Output::AllLogits, logits, pool_, model::BatchSums::kPerToken);
  }
  Result<void> rollback(uint32_t n) override { return session_->rollback(n); }
  size_t max_batch() const override { return kPromptBatch; }
  std::string summary() const override {
    char b[64];
    std::snprintf(b, sizeof b, "KV cache %.1f MiB", session_->kv_bytes() / 1048576.0);
    return b;
  }

 private:
  std::unique_ptr<model::Session> session_;
  kernels::ThreadPool& pool_;
};

// What a call asks of the chain besides its input: the trailing rows it wants back, how rows are
// summed, and where the input starts when drafted positions were rolled back (-1: continue).
struct Shape {
  uint32_t rows = 1;
  bool per_token = false;
  int64_t start = -1;
  void apply(proto::ForwardInput::Builder input) const {
    input.setOutputLast(rows);
    input.setPerTokenSums(per_token);
    input.setStartPosition(start);
  }
};

// Which logits a call's head computes: none (a replay), the last row's, or every row's.
enum class Head { kNone, kLastRow, kAllRows };

struct Hop {
  NodeConnection* connection;
  uint32_t block_begin, block_end;
};

// What this client owes one node of its route and has paid it (work = tokens × blocks).
struct Account {
  bool takes_receipts = false;  // the node announced the "receipts" feature
  uint64_t unpaid_tokens = 0;   // computed there since the last receipt
  uint64_t sequence = 0;        // of the last receipt
  uint64_t work_done = 0;       // everything this client received from it
  uint64_t work_acknowledged = 0;
  bool failed = false;          // a payment failed (logged once)
};

// Bytes of a forward request besides its rows: RPC header, structs, the hops' compute list.
constexpr uint64_t kRequestOverhead = 4096;
constexpr size_t kRingTokenBytes = 32;
// After a ring or chain call timed out, how long each node gets to answer a probe.
constexpr uint32_t kProbeSeconds = 2;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A ring's final row, as the client's sink received it (shape and encoding checked).
struct Delivery {
  std::vector<uint8_t> bytes;
  std::vector<uint64_t> hop_micros;
};

// Where the ring's sink and the calls awaiting their outputs meet: one call, or the micro-batches
// of a pipelined prefill. Acknowledgements of earlier calls may still be on their way back.
struct RingInbox {
  struct Awaited {
    uint32_t rows;  // the rows the call asked for (outputLast)
    kj::Own<kj::PromiseFulfiller<Delivery>> fulfiller;
  };
  std::map<uint64_t, Awaited> awaited;  // by call id
  kj::Maybe<kj::Exception> broken;      // an acknowledgement failed while no call awaited output

  bool awaits(uint64_t call) const { return awaited.count(call) != 0; }
  void expect(uint64_t call, uint32_t n_rows, kj::Own<kj::PromiseFulfiller<Delivery>> f) {
    awaited.emplace(call, Awaited{n_rows, kj::mv(f)});
  }
  void deliver(uint64_t call, Delivery d) {
    auto it = awaited.find(call);
    auto f = kj::mv(it->second.fulfiller);
    awaited.erase(it);
    f->fulfill(kj::mv(d));
  }
  // The ring is broken: the awaiting calls fail with `e`, or else the next one does.
  void fail(kj::Exception e) {
    if (awaited.empty()) {
      if (broken == nullptr) broken = kj::mv(e);
      return;
    }
    auto failed = std::move(awaited);
    awaited.clear();
    for (auto& [call, a] : failed) a.fulfiller->reject(kj::cp(e));
  }
  void forget(uint64_t call) { awaited.erase(call); }
};

// The client's end of a ring, attached on the last node (Node.attachSink).
class SinkImpl final : public proto::OutputSink::Server {
 public:
  SinkImpl(std::shared_ptr<RingInbox> inbox, uint32_t n_embd, HiddenEncoding encoding, std::string where)
      : inbox_(std::move(inbox)), n_embd_(n_embd), encoding_(encoding), where_(std::move(where)) {}

  kj::Promise<void> deliver(DeliverContext context) override {
    auto params = context.getParams();
    const uint64_t call = params.getCallId();
    if (!inbox_->awaits(call))
      throw_rpc_error(ErrorCode::InvalidArgument,
                      "this client awaits no output for call " + std::to_string(call) +
                          (inbox_->awaited.empty()
                               ? ""
                               : " (it awaits call " + std::to_string(inbox_->awaited.begin()->first) + ")"));
    const uint32_t rows = inbox_->awaited.at(call).rows;
    auto output = params.getOutput();
    auto hidden = output.getHidden();
    std::optional<Error> problem;
    auto encoding = validate_hidden(hidden, n_embd_, rows);
    if (!encoding)
      problem = encoding.error();
    else if (hidden.getNTokens() != rows)
      problem = Error{ErrorCode::InvalidArgument, std::to_string(hidden.getNTokens()) + " rows, the call asked for " +
                                                      std::to_string(rows)};
    else if (*encoding != encoding_)
      problem = Error{ErrorCode::InvalidArgument, std::string("hidden states in ") + hidden_encoding_name(*encoding) +
                                                      ", the session uses " + hidden_encoding_name(encoding_)};
    else if (output.getHopComputeMicros().size() > kMaxHops)
      problem =
          Error{ErrorCode::InvalidArgument, "hopComputeMicros lists more than " + std::to_string(kMaxHops) + " hops"};
    if (problem) {
      // The client cannot use this ring's output: Corruption, so that it is not retried as it is.
      inbox_->fail(
          rpc_exception(Error{ErrorCode::Corruption, where_ + " delivered a bad output: " + problem->message}));
      throw_rpc_error(*problem);
    }
    Delivery d;
    auto data = hidden.getData();
    d.bytes.assign(data.begin(), data.end());
    for (uint64_t us : output.getHopComputeMicros()) d.hop_micros.push_back(us);
    inbox_->deliver(call, kj::mv(d));
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<RingInbox> inbox_;
  uint32_t n_embd_;
  HiddenEncoding encoding_;
  std::string where_;
};

class RemotePipeline final : public Pipeline, public kj::TaskSet::ErrorHandler {
 public:
  RemotePipeline(const model::Model& model, const RemoteOptions& options, kernels::ThreadPool& pool)
      : model_(model),
      options_(options),
      pool_(pool),
      io_(kj::setupAsyncIo()),
      acks_(kj::heap<kj::TaskSet>(*this)),
      payments_(kj::heap<kj::TaskSet>(*this)) {}

  ~RemotePipeline() noexcept override {
    settle_accounts();
    // Capabilities, calls and connections belong to io_'s event loop: drop them while it exists.
    payments_ = nullptr;
    acks_ = nullptr;
    sessions_.clear();
    connections_.clear();
  }

  Result<void> open(uint32_t n_ctx) {
    for (const auto& a : options_.hop_addresses)
      if (a.peer_id.empty())
        return Error{ErrorCode::InvalidArgument,
                     "the hop address " + a.host_port() + " names no peer id (write it ID@HOST:PORT)"};
    auto identity = options_.data_dir.empty() ? Identity::generate() : Identity::load_or_create(options_.data_dir);
    if (!identity) return identity.error();
    auto tls = TlsContext::create(*identity);
    if (!tls) return tls.error();
    tls_ = std::move(*tls);
    identity_ = std::make_unique<Identity>(*identity);
    if (RAND_bytes(receipt_session_.data(), static_cast<int>(receipt_session_.size())) != 1)
      return openssl_error(ErrorCode::Internal, "cannot draw random bytes for the receipts' session id");
    auto head = model::Session::create(model_, model_.config().n_layer, model_.config().n_layer, n_ctx);
    if (!head) return head.error();
    head_ = std::move(*head);
    Result<void> result;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { result = open_sessions(n_ctx); })) {
      return to_error(*e);
    }
    return result;
  }

  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return call(tokens, Head::kLastRow, logits);
  }
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return call(tokens, Head::kAllRows, logits);
  }
  Result<void> rollback(uint32_t n) override {
    if (n > n_past_)
      return Error{ErrorCode::InvalidArgument, "cannot roll back " + std::to_string(n) + " positions: the sessions hold " +
                                                   std::to_string(n_past_)};
    n_past_ -= n;
    restart_at_ = n_past_;
    return {};
  }

  Result<void> replay_steps(std::span<const int32_t> tokens) override {
    std::vector<float> unused;
    return call(tokens, Head::kNone, unused);
  }

  // kAllRows and kNone (a replay) sum rows per token; only kAllRows returns every row.
  Result<void> call(std::span<const int32_t> tokens, Head head, std::vector<float>& logits) {
    if (tokens.empty() || tokens.size() > max_batch_)
      return Error{ErrorCode::InvalidArgument, "a call of " + std::to_string(tokens.size()) +
                                                   " tokens; this pipeline takes 1.." + std::to_string(max_batch_) +
                                                   " per call (" + batch_limit_ + ")"};
    const uint32_t rows = head == Head::kAllRows ? static_cast<uint32_t>(tokens.size()) : 1;
    const Shape shape{rows, head != Head::kLastRow, restart_at_};
    return complete(tokens.size(), 1, shape, head, logits, [&](std::vector<uint8_t>& last_hidden,
                                                                std::vector<uint64_t>& hop_micros) {
      return options_.topology == Topology::Ring ? run_ring(tokens, shape, last_hidden, hop_micros)
                                                 : run_hops(tokens, shape, last_hidden, hop_micros);
    });
  }

  Result<void> prefill(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (!pipelined_ || tokens.empty()) return Pipeline::prefill(tokens, logits);
    // Each max_batch() piece (what Pipeline::prefill sends) cut into micro-batches, none of one
    // token unless its piece is one token: the bits of the unpipelined prefill.
    std::vector<std::span<const int32_t>> parts;
    for (size_t i = 0; i < tokens.size(); i += max_batch_) {
      const auto piece = tokens.subspan(i, std::min(max_batch_, tokens.size() - i));
      for (size_t j = 0; j < piece.size();) {
        size_t take = std::min<size_t>(std::max<uint32_t>(options_.micro_batch, 2), piece.size() - j);
        if (piece.size() - j - take == 1) ++take;
        parts.push_back(piece.subspan(j, take));
        j += take;
      }
    }
    if (parts.size() == 1) return forward(tokens, logits);
    return complete(tokens.size(), parts.size(), Shape{1, false, restart_at_}, Head::kLastRow, logits,
                    [&](std::vector<uint8_t>& last_hidden, std::vector<uint64_t>& hop_micros) {
                      return run_pipelined(parts, last_hidden, hop_micros);
                    });
  }

  // Runs `send`, which sends `n_tokens` in `n_calls` calls shaped as `shape` (the last one's) and
  // writes the last node's encoded rows, then `head_rows` of the head on them.
  Result<void> complete(size_t n_tokens, size_t n_calls, const Shape& shape, Head head_rows, std::vector<float>& logits,
                        const std::function<Result<void>(std::vector<uint8_t>&, std::vector<uint64_t>&)>& send) {
    std::vector<uint8_t> last_hidden;
    std::vector<uint64_t> hop_micros;
    Result<void> result;
    const uint32_t rows = shape.rows;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { result = send(last_hidden, hop_micros); })) {
      Error error = to_error(*e);
      if (options_.topology != Topology::Direct && error.is(ErrorCode::DeadlineExceeded))
        error.message += unresponsive_nodes();
      broken_ = true;
      return error;
    }
    if (!result) {
      broken_ = true;
      return result;
    }
    account(n_tokens);
    std::vector<float> hidden;
    if (auto d = decode_hidden(last_hidden, rows, model_.config().n_embd, options_.encoding, hidden); !d)
      return d.error().with_context("the last node's reply");
    calls_ += n_calls;
    n_past_ += static_cast<uint32_t>(n_tokens);
    restart_at_ = -1;
    if (head_rows == Head::kNone) return {};
    const auto t0 = SteadyClock::now();
    head_->reset();  // the head holds no blocks, so no state: only its positions would run out
    Result<void> head;
    if (head_rows == Head::kAllRows) {
      const auto all = [&](kernels::ThreadPool& pool) {
        head = head_->forward({}, hidden, model::Output::AllLogits, logits, pool, model::BatchSums::kPerToken);
      };
      // Other pipelines' heads may be running on the combiner's pool: this one waits its turn.
      if (options_.head_combiner) options_.head_combiner->exclusive(all);
      else all(pool_);
    } else if (options_.head_combiner) {
      model::SequenceStep step{head_.get(), {}, hidden, model::Output::LastLogits, &logits, {}};
      options_.head_combiner->run(step);
      head = std::move(step.result);
    } else {
      head = head_->forward({}, hidden, model::Output::LastLogits, logits, pool_);
    }
    if (head && n_tokens == 1) {
      // Generation steps: what the nodes and the head cost, to compare a token's latency with.
      double sum = 0;
      for (uint64_t us : hop_micros) sum += us / 1000.0;
      token_nodes_ms_.push_back(sum);
      if (hop_micros.size() == hops_.size())
        for (size_t i = 0; i < hops_.size(); ++i) token_hop_ms_[i].push_back(hop_micros[i] / 1000.0);
      token_head_ms_.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
    }
    return head;
  }

  size_t max_batch() const override { return max_batch_; }

  std::string summary() const override {
    char b[256];
    std::snprintf(b, sizeof b, "%zu nodes, route %s, %s hidden states, %llu calls, %.1f KiB sent, %.1f KiB received",
                  hops_.size(), topology_name(options_.topology), hidden_encoding_name(options_.encoding),
                  static_cast<unsigned long long>(calls_), bytes_sent_ / 1024.0, bytes_received_ / 1024.0);
    std::string out = b;
    if (!token_nodes_ms_.empty()) {
      std::string hops;
      for (const auto& h : token_hop_ms_) {
        std::snprintf(b, sizeof b, "%s%.2f", hops.empty() ? "" : " + ", median(h));
        hops += b;
      }
      std::snprintf(b, sizeof b, ", per token: nodes %.2f ms (%s), head %.2f ms (medians of %zu tokens)",
                    median(token_nodes_ms_), hops.c_str(), median(token_head_ms_), token_nodes_ms_.size());
      out += b;
    }
    return out;
  }

  std::vector<HopReport> hop_reports() const override {
    std::vector<HopReport> out;
    for (size_t i = 0; i < hops_.size(); ++i) {
      const bool timed = i < token_hop_ms_.size() && !token_hop_ms_[i].empty();
      out.push_back({hops_[i].connection->peer_id(), hops_[i].block_begin, hops_[i].block_end,
                     i < accounts_.size() ? accounts_[i].work_done : 0, timed ? median(token_hop_ms_[i]) : 0.0,
                     timed ? token_hop_ms_[i].size() : 0});
    }
    return out;
  }

  void taskFailed(kj::Exception&&) override {}  // acknowledgements and payments report their own errors

 private:
  // Every node of the route computed `tokens` more positions for this client.
  void account(size_t tokens) {
    for (size_t i = 0; i < hops_.size(); ++i) {
      Account& a = accounts_[i];
      a.unpaid_tokens += tokens;
      a.work_done += uint64_t{tokens} * (hops_[i].block_end - hops_[i].block_begin);
      if (options_.receipt_every && a.unpaid_tokens >= options_.receipt_every) pay(i);
    }
  }

  // Signs a receipt for what node `i` computed since its last one and sends it; the reply, when it
  // comes, counts it as acknowledged.
  void pay(size_t i) {
    Account& a = accounts_[i];
    if (!a.takes_receipts || a.unpaid_tokens == 0) return;
    const Hop& hop = hops_[i];
    WorkReceipt r;
    r.node_id = hop.connection->peer_id();
    r.session = receipt_session_;
    r.sequence = ++a.sequence;
    r.tokens = static_cast<uint32_t>(std::min<uint64_t>(a.unpaid_tokens, kMaxReceiptTokens));
    r.block_begin = hop.block_begin;
    r.block_end = hop.block_end;
    r.model_id = receipt_model_id(hop.connection->info().model);
    r.issued_at = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    a.unpaid_tokens -= r.tokens;
    if (auto s = sign_receipt(r, *identity_); !s) {
      log("credits: " + s.error().message);
      return;
    }
    auto request = hop.connection->node().payReceiptsRequest();
    write_receipt(r, request.initReceipts(1)[0]);
    const std::string where = hop.connection->address().host_port();
    payments_->add(with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                "paying node " + where, request.send())
                       .then([this, i, work = r.work()](auto) { accounts_[i].work_acknowledged += work; },
                             [this, i, where](kj::Exception&& e) {
                               if (!accounts_[i].failed)
                                 log("credits: node " + where + " did not take a receipt: " + to_error(e).message);
                               accounts_[i].failed = true;
                             }));
  }

  // The pipeline goes: pay what is unpaid, wait a while for the acknowledgements, log the tally.
  void settle_accounts() {
    if (!options_.receipt_every || accounts_.empty()) return;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      for (size_t i = 0; i < hops_.size(); ++i) pay(i);
      // After a failed call a node of the route may be gone or frozen: a failover must not wait
      // for it, so the receipts leave and their acknowledgements are not awaited.
      if (broken_)
        io_.waitScope.poll();
      else
        with_timeout(io_.provider->getTimer(), options_.settle_timeout_ms * kj::MILLISECONDS, "settling receipts",
                     payments_->onEmpty())
            .wait(io_.waitScope);
    })) {
      log("credits: " + to_error(*e).message);
    }
    for (size_t i = 0; i < hops_.size(); ++i) {
      const Account& a = accounts_[i];
      log("credits: node " + hops_[i].connection->peer_id() + " blocks [" + std::to_string(hops_[i].block_begin) +
          ", " + std::to_string(hops_[i].block_end) + ") work " + std::to_string(a.work_done) + " acknowledged " +
          std::to_string(a.work_acknowledged) + (a.takes_receipts ? "" : " (the node takes no receipts)"));
    }
  }

  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  Result<void> open_sessions(uint32_t n_ctx) {
    if (!options_.model_identity) {
      auto identified = identify_model(model_);
      if (!identified) return identified.error();
      options_.model_identity = std::move(*identified);
    }
    const ModelIdentity local = *options_.model_identity;
    std::vector<std::string> features{std::string("hidden-") + hidden_encoding_name(options_.encoding)};
    if (options_.topology != Topology::Direct) features.push_back("chain");
    if (options_.topology == Topology::Ring) features.push_back("ring");
    const auto timeout = options_.connect_timeout_s * kj::SECONDS;
    kj::Vector<kj::Promise<kj::Own<NodeConnection>>> connecting;
    for (const auto& peer : options_.peers)
      connecting.add(NodeConnection::connect(*io_.provider, *tls_, peer, features, timeout));
    auto connected = kj::joinPromises(connecting.releaseAsArray()).wait(io_.waitScope);
    for (auto& c : connected) {
      const auto& info = c->info();
      if (c->address().peer_id.empty())
        log("node " + c->address().host_port() + " is " + c->peer_id() + " (trust on first use; pin it as " +
            c->peer_id() + "@" + c->address().host_port() + ")");
      if (!(info.model == local))
        return Error{ErrorCode::InvalidArgument, "node " + c->address().host_port() + " serves " +
                                                     info.model.to_string() + ", but the local model file is " +
                                                     local.to_string()};
      if (info.max_length < n_ctx)
        return Error{ErrorCode::ResourceExhausted, "node " + c->address().host_port() + " allows sessions of at most " +
                     std::to_string(info.max_length) + " positions; this run needs " + std::to_string(n_ctx)};
      connections_.push_back(kj::mv(c));
    }
    // Greedy cover of [0, n_layer): at each block, the node that serves it and reaches furthest.
    const uint32_t n_layer = model_.config().n_layer;
    for (uint32_t at = 0; at < n_layer;) {
      NodeConnection* best = nullptr;
      for (auto& c : connections_) {
        const auto& i = c->info();
        if (i.block_begin <= at && at < i.block_end && (!best || i.block_end > best->info().block_end)) best = c.get();
      }
      if (!best) {
        std::string served;
        for (auto& c : connections_)
          served += " " + c->address().host_port() + " [" + std::to_string(c->info().block_begin) + ", " +
                    std::to_string(c->info().block_end) + ")";
        return Error{ErrorCode::Unavailable, "no node serves block " + std::to_string(at) + " of " +
                                                 std::to_string(n_layer) + " (the nodes serve:" + served + ")"};
      }
      hops_.push_back({best, at, best->info().block_end});
      log("blocks [" + std::to_string(at) + ", " + std::to_string(best->info().block_end) + ") on " +
          best->address().host_port());
      at = best->info().block_end;
    }
    token_hop_ms_.resize(hops_.size());
    accounts_.resize(hops_.size());
    for (size_t i = 0; i < hops_.size(); ++i) {
      const auto& features = hops_[i].connection->info().features;
      accounts_[i].takes_receipts = std::find(features.begin(), features.end(), "receipts") != features.end();
    }
    if (auto b = choose_max_batch(); !b) return b;
    choose_pipelining();
    ring_name_ = "the ring (first node " + hops_.front().connection->address().host_port() + ", last node " +
                 hops_.back().connection->address().host_port() + ")";
    if (options_.topology == Topology::Ring) {
      std::string token(kRingTokenBytes, '\0');
      if (RAND_bytes(reinterpret_cast<unsigned char*>(token.data()), static_cast<int>(token.size())) != 1)
        return openssl_error(ErrorCode::Internal, "cannot draw random bytes for the ring token");
      // The sink goes to the last node over this client's own connection to it; the token, which
      // travels down the chain, lets that node bind it to the session the first node opens there.
      NodeConnection& last = *hops_.back().connection;
      const std::string where = "the last node " + last.address().host_port();
      inbox_ = std::make_shared<RingInbox>();
      auto attach = last.node().attachSinkRequest();
      attach.setToken(kj::arrayPtr(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
      attach.setSink(kj::heap<SinkImpl>(inbox_, model_.config().n_embd, options_.encoding, where));
      with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS, "attaching the output sink",
                   attach.send())
          .catch_([where](kj::Exception&& e) -> capnp::Response<proto::Node::AttachSinkResults> {
            rethrow_with_context(e, where);
          })
          .wait(io_.waitScope);
      sessions_.push_back(open_session(0, n_ctx, /*with_downstream=*/true, token));
    } else if (options_.topology == Topology::Chain) {
      sessions_.push_back(open_session(0, n_ctx, /*with_downstream=*/true, ""));
    } else {
      for (size_t i = 0; i < hops_.size(); ++i) sessions_.push_back(open_session(i, n_ctx, false, ""));
    }
    return {};
  }

  // The largest batch every hop takes: its maxBatchTokens, and rows that fit in the messages it
  // reads (hidden states for all but a chain's first node, which gets token ids; in direct mode
  // every node's reply carries the rows too). Sizes are checked here, so that an oversized call
  // is refused with the reason before anything is sent.
  Result<void> choose_max_batch() {
    max_batch_ = kPromptBatch;
    batch_limit_ = "the client's prompt batch";
    const uint64_t row_bytes = encoded_hidden_bytes(options_.encoding, 1, model_.config().n_embd);
    for (size_t i = 0; i < hops_.size(); ++i) {
      const NodeConnection& c = *hops_[i].connection;
      const std::string where = c.address().host_port();
      if (c.info().max_batch_tokens < max_batch_) {
        max_batch_ = c.info().max_batch_tokens;
        batch_limit_ = "node " + where + " takes " + std::to_string(max_batch_) + " tokens per call";
      }
      const uint64_t limit = std::min<uint64_t>(c.info().max_message_bytes, kDefaultMaxMessageBytes);
      const uint64_t per_row = (i == 0 && options_.topology != Topology::Direct) ? sizeof(int32_t) : row_bytes;
      const uint64_t rows = limit > kRequestOverhead ? (limit - kRequestOverhead) / per_row : 0;
      if (rows == 0)
        return Error{ErrorCode::InvalidArgument, "node " + where + " reads messages of at most " +
                                                     std::to_string(limit) + " bytes, too few for one row (" +
                                                     std::to_string(per_row) + " bytes and " +
                                                     std::to_string(kRequestOverhead) + " of overhead)"};
      if (rows < max_batch_) {
        max_batch_ = static_cast<size_t>(rows);
        batch_limit_ = "node " + where + " reads messages of at most " + std::to_string(limit) + " bytes";
        log("at most " + std::to_string(max_batch_) + " tokens per call: " + batch_limit_);
      }
    }
    if (max_batch_ == 0) return Error{ErrorCode::InvalidArgument, "a node accepts no tokens per call"};
    return {};
  }

  // Pipelined prefill: on a ring or chain whose every node queues a session's calls ("pipelined"),
  // with at most the smallest per-client queue of the route in flight.
  void choose_pipelining() {
    pipelined_ = options_.micro_batch > 0 && options_.topology != Topology::Direct;
    window_ = max_batch_;
    uint64_t window = UINT64_MAX;
    for (const Hop& hop : hops_) {
      const NodeDescription& info = hop.connection->info();
      if (std::find(info.features.begin(), info.features.end(), "pipelined") == info.features.end())
        pipelined_ = false;
      window = std::min(window, info.max_queued_tokens_per_client ? info.max_queued_tokens_per_client
                                                                  : uint64_t{info.max_batch_tokens});
    }
    if (window != UINT64_MAX) window_ = static_cast<size_t>(std::max<uint64_t>(window, 1));
  }

  // The address the previous node of a chain dials to reach `c`.
  std::string hop_address(const NodeConnection& c) const {
    for (const auto& a : options_.hop_addresses)
      if (a.peer_id == c.peer_id()) return a.host_port();
    return c.address().host_port();
  }

  proto::Session::Client open_session(size_t hop_index, uint32_t n_ctx, bool with_downstream,
                                      const std::string& ring_token) {
    const Hop& hop = hops_[hop_index];
    auto request = hop.connection->node().openSessionRequest();
    auto p = request.initParams();
    p.setBlockBegin(hop.block_begin);
    p.setBlockEnd(hop.block_end);
    p.setMaxLength(n_ctx);
    p.setHiddenFormat(static_cast<proto::HiddenFormat>(options_.encoding));
    if (with_downstream) {
      auto down = p.initDownstream(static_cast<unsigned>(hops_.size() - hop_index - 1));
      for (size_t i = hop_index + 1; i < hops_.size(); ++i) {
        auto d = down[static_cast<unsigned>(i - hop_index - 1)];
        d.setAddress(hop_address(*hops_[i].connection).c_str());
        d.setPeerId(hops_[i].connection->peer_id().c_str());  // the id this client verified itself
        d.setBlockBegin(hops_[i].block_begin);
        d.setBlockEnd(hops_[i].block_end);
      }
    }
    if (!ring_token.empty())
      p.setRingToken(kj::arrayPtr(reinterpret_cast<const kj::byte*>(ring_token.data()), ring_token.size()));
    const std::string where = hop.connection->address().host_port();
    auto response = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                 "opening a session on " + where, request.send())
                        .catch_([where](kj::Exception&& e) -> capnp::Response<proto::Node::OpenSessionResults> {
                          rethrow_with_context(e, "node " + where);
                        })
                        .wait(io_.waitScope);
    return response.getSession();
  }

  // Ring: the tokens go to the first node; the output arrives at the sink. The first node's reply
  // (an acknowledgement, once the rest of the ring is done) is not waited for: it only matters
  // when it is an error, which then fails this call or the next.
  Result<void> run_ring(std::span<const int32_t> tokens, const Shape& shape, std::vector<uint8_t>& last_hidden,
                        std::vector<uint64_t>& hop_micros) {
    auto delivery = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                 "forward on " + ring_name_, start_ring(tokens, shape))
                        .wait(io_.waitScope);
    // Send deliver()'s return now: the last node acknowledges only after it, and this loop does not
    // run again until the next call, which may be minutes away (past the nodes' call timeouts).
    io_.waitScope.poll();
    last_hidden = std::move(delivery.bytes);
    hop_micros = std::move(delivery.hop_micros);
    return {};
  }

  // Sends one ring call; the promise is its output, as the sink receives it.
  kj::Promise<Delivery> start_ring(std::span<const int32_t> tokens, const Shape& shape) {
    KJ_IF_MAYBE(e, inbox_->broken) { kj::throwFatalException(kj::cp(*e)); }
    const uint64_t call = ++ring_calls_;
    auto paf = kj::newPromiseAndFulfiller<Delivery>();
    inbox_->expect(call, shape.rows, kj::mv(paf.fulfiller));
    auto request = sessions_[0].forwardRequest();
    auto input = request.initInput();
    auto list = input.initInput().initTokens(static_cast<unsigned>(tokens.size()));
    for (unsigned t = 0; t < tokens.size(); ++t) list.set(t, tokens[t]);
    shape.apply(input);
    input.setCallId(call);
    bytes_sent_ += tokens.size() * 4;
    acks_->add(request.send().then(
        [inbox = inbox_, call, where = ring_name_](capnp::Response<proto::Session::ForwardResults>) {
          if (inbox->awaits(call))
            inbox->fail(rpc_exception(Error{ErrorCode::Internal, where + " acknowledged call " + std::to_string(call) +
                                                                     " but its last node delivered no output"}));
        },
        [inbox = inbox_, where = ring_name_](kj::Exception&& e) {
          inbox->fail(rpc_exception(to_error(e).with_context(where)));
        }));
    return paf.promise
        .then([this](Delivery d) {
          bytes_received_ += d.bytes.size();
          return d;
        })
        .attach(kj::defer([inbox = inbox_, call] { inbox->forget(call); }));
  }

  // Sends one chain call (the reply brings the rows back); the promise is its checked output.
  kj::Promise<Delivery> start_chain(std::span<const int32_t> tokens, const Shape& shape) {
    auto request = sessions_[0].forwardRequest();
    auto input = request.initInput();
    auto list = input.initInput().initTokens(static_cast<unsigned>(tokens.size()));
    for (unsigned t = 0; t < tokens.size(); ++t) list.set(t, tokens[t]);
    shape.apply(input);
    bytes_sent_ += tokens.size() * 4;
    const std::string where = "the chain (first node " + hops_[0].connection->address().host_port() + ")";
    return request.send().then(
        [this, rows = shape.rows, where](capnp::Response<proto::Session::ForwardResults> response) {
          auto hidden = response.getOutput().getHidden();
          if (auto bad = check_rows(hidden, rows, where)) kj::throwFatalException(rpc_exception(*bad));
          Delivery d;
          auto data = hidden.getData();
          d.bytes.assign(data.begin(), data.end());
          bytes_received_ += data.size();
          for (uint64_t us : response.getOutput().getHopComputeMicros())
            if (d.hop_micros.size() < kMaxHops) d.hop_micros.push_back(us);
          return d;
        },
        [where](kj::Exception&& e) -> Delivery { rethrow_with_context(e, where); });
  }

  // A pipelined prefill on a ring or chain: the calls go out while at most window_ tokens are in
  // flight (the nodes queue them in order, feature "pipelined"); their outputs are awaited in order.
  Result<void> run_pipelined(const std::vector<std::span<const int32_t>>& parts, std::vector<uint8_t>& last_hidden,
                             std::vector<uint64_t>& hop_micros) {
    struct InFlight {
      size_t tokens;
      kj::Promise<Delivery> output;
    };
    std::deque<InFlight> in_flight;
    size_t next = 0, tokens_in_flight = 0;
    const std::string where =
        options_.topology == Topology::Ring
            ? ring_name_
            : "the chain (first node " + hops_[0].connection->address().host_port() + ")";
    while (next < parts.size() || !in_flight.empty()) {
      if (next < parts.size() && (in_flight.empty() || tokens_in_flight + parts[next].size() <= window_)) {
        // Positions continue from the first call's (after a rollback, its startPosition).
        const Shape shape{1, false, next == 0 ? restart_at_ : -1};
        in_flight.push_back({parts[next].size(), options_.topology == Topology::Ring
                                                     ? start_ring(parts[next], shape)
                                                     : start_chain(parts[next], shape)});
        tokens_in_flight += parts[next].size();
        ++next;
        continue;
      }
      auto delivery = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                   "forward on " + where, kj::mv(in_flight.front().output))
                          .wait(io_.waitScope);
      tokens_in_flight -= in_flight.front().tokens;
      in_flight.pop_front();
      last_hidden = std::move(delivery.bytes);
      hop_micros = std::move(delivery.hop_micros);
    }
    io_.waitScope.poll();  // as run_ring: the last delivery's return leaves now
    return {};
  }

  // Why a reply's hidden states are not the `rows` rows in this session's encoding; nullopt: they are.
  std::optional<Error> check_rows(proto::HiddenStates::Reader hidden, uint32_t rows, const std::string& where) const {
    auto encoding = validate_hidden(hidden, model_.config().n_embd, rows);
    if (!encoding)
      return Error{ErrorCode::Corruption, where + " replied with bad hidden states: " + encoding.error().message};
    if (*encoding != options_.encoding || hidden.getNTokens() != rows)
      return Error{ErrorCode::Corruption, where + " replied with " + std::to_string(hidden.getNTokens()) +
                                              " rows in " + hidden_encoding_name(*encoding) + ", expected " +
                                              std::to_string(rows) + " in " + hidden_encoding_name(options_.encoding)};
    return std::nullopt;
  }

  // Chain and direct: sends the tokens through the hops; `last_hidden` gets the final node's
  // encoded last row.
  Result<void> run_hops(std::span<const int32_t> tokens, const Shape& shape, std::vector<uint8_t>& last_hidden,
                        std::vector<uint64_t>& hop_micros) {
    const size_t rounds = options_.topology == Topology::Chain ? 1 : hops_.size();
    std::vector<uint8_t> carried;
    uint32_t carried_rows = 0;
    for (size_t i = 0; i < rounds; ++i) {
      const bool last = i + 1 == rounds;
      auto request = sessions_[i].forwardRequest();
      auto input = request.initInput();
      if (i == 0) {
        auto list = input.initInput().initTokens(static_cast<unsigned>(tokens.size()));
        for (unsigned t = 0; t < tokens.size(); ++t) list.set(t, tokens[t]);
        bytes_sent_ += tokens.size() * 4;
      } else {
        auto h = input.initInput().initHidden();
        h.setFormat(static_cast<proto::HiddenFormat>(options_.encoding));
        h.setNTokens(carried_rows);
        h.setNEmbd(model_.config().n_embd);
        h.setData(kj::arrayPtr(carried.data(), carried.size()));
        bytes_sent_ += carried.size();
      }
      shape.apply(input);
      if (!last) input.setOutputLast(0);
      const std::string where = options_.topology == Topology::Chain
                                    ? "the chain (first node " + hops_[0].connection->address().host_port() + ")"
                                    : "node " + hops_[i].connection->address().host_port();
      auto response = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                   "forward on " + where, request.send())
                          .catch_([where](kj::Exception&& e) -> capnp::Response<proto::Session::ForwardResults> {
                            rethrow_with_context(e, where);
                          })
                          .wait(io_.waitScope);
      auto hidden = response.getOutput().getHidden();
      const uint32_t rows = last ? shape.rows : static_cast<uint32_t>(tokens.size());
      if (auto bad = check_rows(hidden, rows, where)) return *bad;
      auto data = hidden.getData();
      bytes_received_ += data.size();
      carried.assign(data.begin(), data.end());
      carried_rows = rows;
      for (uint64_t us : response.getOutput().getHopComputeMicros())
        if (hop_micros.size() < kMaxHops) hop_micros.push_back(us);
    }
    last_hidden = std::move(carried);
    return {};
  }

  // After a ring or chain call timed out: the nodes that do not even answer `info` (stopped, or
  // their event loop stuck; a node that is only slow computing still answers).
  std::string unresponsive_nodes() {
    std::string list;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      kj::Vector<kj::Promise<bool>> probes;
      for (const auto& hop : hops_)
        probes.add(with_timeout(io_.provider->getTimer(), kProbeSeconds * kj::SECONDS, "info",
                                hop.connection->node().infoRequest().send())
                       .then([](auto) { return true; }, [](kj::Exception&&) { return false; }));
      auto answers = kj::joinPromises(probes.releaseAsArray()).wait(io_.waitScope);
      for (size_t i = 0; i < answers.size(); ++i)
        if (!answers[i]) list += (list.empty() ? "" : ", ") + hops_[i].connection->address().host_port();
    })) {
      return "";
    }
    if (list.empty()) return " (every node still answers a probe: one of them is overloaded)";
    return " (not answering a probe within " + std::to_string(kProbeSeconds) + " s: " + list + ")";
  }

  const model::Model& model_;
  RemoteOptions options_;
  kernels::ThreadPool& pool_;
  kj::AsyncIoContext io_;
  kj::Own<kj::TaskSet> acks_;  // ring acknowledgements in flight
  kj::Own<kj::TaskSet> payments_;  // receipts sent and not yet acknowledged
  std::shared_ptr<TlsContext> tls_;
  std::unique_ptr<Identity> identity_;  // signs the receipts
  std::array<uint8_t, 16> receipt_session_{};
  std::vector<Account> accounts_;  // one per hop
  bool broken_ = false;            // a call failed: the route may be dead (settle_accounts)
  std::vector<kj::Own<NodeConnection>> connections_;
  std::vector<Hop> hops_;
  std::vector<proto::Session::Client> sessions_;
  std::shared_ptr<RingInbox> inbox_;
  std::string ring_name_;
  uint64_t ring_calls_ = 0;
  uint32_t n_past_ = 0;      // positions the sessions hold
  int64_t restart_at_ = -1;  // after a rollback: the next call's startPosition
  std::unique_ptr<model::Session> head_;
  size_t max_batch_ = kPromptBatch;
  std::string batch_limit_;  // why max_batch_ is what it is
  bool pipelined_ = false;   // prefill() pipelines (choose_pipelining)
  size_t window_ = 1;        // tokens a pipelined prefill keeps in flight
  uint64_t calls_ = 0, bytes_sent_ = 0, bytes_received_ = 0;
  // Generation steps (one token per call): compute on the nodes (sum and per hop) and of the head.
  std::vector<double> token_nodes_ms_, token_head_ms_;
  std::vector<std::vector<double>> token_hop_ms_;
};

}  // namespace

Result<void> Pipeline::replay_steps(std::span<const int32_t> tokens) {
  if (tokens.empty() || tokens.size() > max_batch())
    return Error{ErrorCode::InvalidArgument, "a replay of " + std::to_string(tokens.size()) +
                                                 " tokens; this pipeline takes 1.." + std::to_string(max_batch())};
  std::vector<float> unused;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (auto r = forward(tokens.subspan(i, 1), unused); !r) return r;
  return {};
}

Result<void> Pipeline::prefill(std::span<const int32_t> tokens, std::vector<float>& logits) {
  if (tokens.empty()) return Error{ErrorCode::InvalidArgument, "the prompt is empty"};
  const size_t batch = max_batch();
  for (size_t i = 0; i < tokens.size(); i += batch)
    if (auto r = forward(tokens.subspan(i, std::min(batch, tokens.size() - i)), logits); !r) return r;
  return {};
}

Result<Topology> parse_topology(std::string_view name) {
  if (name == "ring") return Topology::Ring;
  if (name == "chain") return Topology::Chain;
  if (name == "direct") return Topology::Direct;
  return Error{ErrorCode::InvalidArgument, "unknown route '" + std::string(name) + "' (choose ring, chain or direct)"};
}

const char* topology_name(Topology topology) {
  switch (topology) {
    case Topology::Ring: return "ring";
    case Topology::Chain: return "chain";
    case Topology::Direct: return "direct";
  }
  return "?";
}

Result<std::unique_ptr<Pipeline>> make_local_pipeline(const model::Model& model, uint32_t n_ctx,
                                                      kernels::ThreadPool& pool) {
  auto session = model::Session::create(model, 0, model.config().n_layer, n_ctx);
  if (!session) return session.error();
  return std::unique_ptr<Pipeline>(new LocalPipeline(std::move(*session), pool));
}

Result<std::unique_ptr<Pipeline>> make_remote_pipeline(const model::Model& model, const RemoteOptions& options,
                                                       uint32_t n_ctx, kernels::ThreadPool& pool) {
  auto pipeline = std::make_unique<RemotePipeline>(model, options, pool);
  if (auto r = pipeline->open(n_ctx); !r) return r.error();
  return std::unique_ptr<Pipeline>(std::move(pipeline));
}

}  // namespace omni::net
