#include "net/node_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <openssl/rand.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <kj/debug.h>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/client_quota.h"
#include "net/compute_worker.h"
#include "net/connection_limits.h"
#include "net/errors.h"
#include "net/forward_attestation.h"
#include "net/guarded_message_stream.h"
#include "net/hidden_codec.h"
#include "net/node_connection.h"
#include "net/node_info.h"
#include "net/peer_id.h"
#include "net/receipt_rate.h"
#include "net/receive_budget.h"
#include "net/request_validation.h"
#include "net/throttled_stream.h"
#include "net/tls.h"
#include "net/work_receipt.h"

namespace omni::net {

using SteadyClock = std::chrono::steady_clock;

class SessionImpl;

// A ring client's OutputSink, attached (Node.attachSink) and waiting for the session that names its
// token. Dropped with the connection it came on (owner) when no session claimed it.
struct PendingSink {
  proto::OutputSink::Client sink;
  const void* owner;
  ClientQuota::Lease lease;  // the client's count of waiting sinks
};

// Who a connection's calls are from, for the quotas and the compute scheduler.
struct ClientIdentity {
  ClientKey key;
  std::string scheduling;  // the fair queue's key: the address, or the peer id without one
};

struct NodeServer::State {
  NodeOptions options;
  Identity identity;
  std::shared_ptr<TlsContext> tls;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<kernels::ThreadPool> pool;
  NodeDescription description;  // the constant parts; current() adds the counters
  std::optional<std::string> paused;  // set_paused: why the node takes no session now
  uint32_t active_sessions = 0;
  uint64_t kv_reserved = 0;
  ClientQuota session_quota{"sessions", "--max-sessions-per-client", 0};
  ClientQuota sink_quota{"waiting output sinks", "--max-sinks-per-client", 0};
  std::set<SessionImpl*> sessions;
  std::map<std::string, PendingSink> sinks;  // by ring token
  kj::AsyncIoProvider* io = nullptr;
  std::shared_ptr<ReceiveBudget> receive_budget;
  std::unique_ptr<ConnectionLimits> connections;
  uint32_t refusals_in_flight = 0;  // refused connections being told why (bounded: each costs a handshake)
  bool accept_failing = false;      // the accept loop is backing off (logged once per episode)
  std::deque<kj::TimePoint> fast_hop_failures;  // in the last minute, answered at once
  std::unique_ptr<ReceiptRate> receipt_rate;

  // Whether an unreachable hop may be answered now rather than at the connect timeout.
  bool take_fast_hop_failure(kj::TimePoint now) {
    while (!fast_hop_failures.empty() && now - fast_hop_failures.front() >= 60 * kj::SECONDS)
      fast_hop_failures.pop_front();
    if (fast_hop_failures.size() >= options.fast_hop_failures_per_minute) return false;
    fast_hop_failures.push_back(now);
    return true;
  }
  std::unique_ptr<ComputeWorker> worker;  // declared last: stops before the model and pool go

  uint64_t kv_bytes(uint32_t block_begin, uint32_t block_end, uint32_t positions) const {
    // KvCache: keys and values, F16, kv_dim per position per block.
    return 2ull * (block_end - block_begin) * model->config().kv_dim() * 2ull * positions;
  }
  NodeDescription current() const {
    NodeDescription d = description;
    // Paused (--when-idle): full, so that clients and routing pass it by (docs/protocol.md).
    d.active_sessions = paused ? std::max(active_sessions, options.max_sessions) : active_sessions;
    d.kv_bytes_free = options.max_kv_bytes > kv_reserved ? options.max_kv_bytes - kv_reserved : 0;
    d.queued_calls = static_cast<uint32_t>(worker->outstanding());
    d.queued_tokens = worker->outstanding_cost();
    return d;
  }
};

namespace {

using State = NodeServer::State;

std::string mib(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(bytes) / 1048576.0);
  return b;
}

// The engine state of one session. Touched only on the compute thread once created; shared so
// that a job in flight keeps it alive after the session is released.
struct EngineSlot {
  std::unique_ptr<model::Session> session;
  // Set on the event loop when the session is released: a call still computing stops at its next
  // slice instead of spending the rest of its compute on nobody.
  std::atomic<bool> released{false};
};

// Handed from the compute thread by shared pointer, so a reply in flight costs no copies.
struct ForwardJobResult;
using JobResult = std::shared_ptr<ForwardJobResult>;
struct ForwardJobResult {
  std::optional<Error> error;
  std::vector<uint8_t> bytes;
  uint32_t rows = 0;
  uint32_t n_past = 0;
  uint64_t micros = 0;
};

// What a forward call carries past its compute.
struct ForwardCall {
  int64_t start_position;
  uint32_t output_last;
  uint64_t call_id;
  std::vector<uint64_t> upstream_micros;
  bool per_token_sums;
  uint32_t n_tokens;
  Sha256 input_sha256;  // for the reply's attestation
};

// One forward call's compute, run a slice of at most `slice` rows at a time (ComputeWorker
// run_batched) so that other clients' calls run between the slices, and each slice shares its pass
// with other sessions' steps. Slices of two or more rows give the same bits as one batch (the
// kernels compute each row alike); a single row may not (see model::Output), so no slice of a
// multi-row call has one row. Touched only on the compute thread.
struct ForwardJob final : BatchStep {
  std::shared_ptr<EngineSlot> slot;
  ForwardRequest req;
  uint32_t keep_rows = 0;
  HiddenEncoding encoding{};
  uint32_t n_embd = 0;
  uint32_t slice = 2;
  const std::function<void(std::vector<uint8_t>&)>* output_filter = nullptr;  // NodeOptions::output_filter
  uint32_t done = 0;  // rows computed
  uint32_t take = 0;  // rows of the slice in the pass
  SteadyClock::time_point t0;
  std::vector<float> hidden_in, rows, out;
  ForwardJobResult result;

  // Rows of the next slice once `done` rows are computed: `slice`, or one more rather than leave one.
  // A call that wants per-token sums (model::BatchSums::kPerToken: verifying drafted tokens) goes a
  // row per pass, which gives each row the bits of a call of its own.
  uint32_t next_rows() const {
    if (req.per_token_sums) return 1;
    const uint32_t left = req.n_tokens - done;
    uint32_t take = std::min(slice, left);
    if (left - take == 1) ++take;
    return take;
  }

  const model::Session& session() const override { return *slot->session; }

  bool prepare(model::SequenceStep& step) override {
    model::Session& session = *slot->session;
    t0 = SteadyClock::now();
    if (slot->released) return fail(Error{ErrorCode::Unavailable, "session closed"});
    if (done == 0) {
      if (req.start_position >= 0) {
        const auto start = static_cast<uint64_t>(req.start_position);
        if (start > session.n_past())
          return fail(Error{ErrorCode::InvalidArgument, "startPosition " + std::to_string(start) +
                                                            " is past the " + std::to_string(session.n_past()) +
                                                            " positions this session holds"});
        if (start + req.n_tokens > session.n_ctx())
          return fail(Error{ErrorCode::InvalidArgument,
                            "positions " + std::to_string(start) + " + " + std::to_string(req.n_tokens) +
                                " exceed the session's maxLength " + std::to_string(session.n_ctx())});
        if (auto rb = session.rollback(session.n_past() - static_cast<uint32_t>(start)); !rb) return fail(rb.error());
      }
      if (!req.hidden.empty()) {
        if (auto d = decode_hidden(req.hidden, req.n_tokens, n_embd, req.encoding, hidden_in); !d)
          return fail(d.error());
      }
      if (keep_rows != 1) out.reserve(size_t{req.n_tokens} * n_embd);
    }
    take = next_rows();
    step.session = &session;
    if (!req.tokens.empty()) step.tokens = std::span<const int32_t>(req.tokens).subspan(done, take);
    if (!hidden_in.empty())
      step.hidden = std::span<const float>(hidden_in).subspan(size_t{done} * n_embd, size_t{take} * n_embd);
    // One row wanted (a client's generation step or prompt): LastHidden, so that a node holding the
    // model's last block computes it exactly as a local run does (see model::Output); the earlier
    // slices' rows are not wanted at all.
    step.output = keep_rows == 1 ? model::Output::LastHidden : model::Output::Hidden;
    step.out = keep_rows == 1 ? &out : &rows;
    return true;
  }

  uint64_t complete(model::SequenceStep& step, bool prepared) override {
    if (!prepared) return 0;
    if (!step.result) {
      fail(step.result.error());
      return 0;
    }
    if (keep_rows != 1) out.insert(out.end(), rows.begin(), rows.end());
    done += take;
    result.micros += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count());
    if (done < req.n_tokens) return next_rows();
    const size_t skip = out.size() - size_t{keep_rows} * n_embd;
    if (auto e = encode_hidden(std::span<const float>(out).subspan(skip), n_embd, encoding, result.bytes); !e) {
      fail(e.error().with_context("the blocks produced unusable hidden states"));
      return 0;
    }
    if (output_filter) (*output_filter)(result.bytes);
    result.rows = keep_rows;
    result.n_past = slot->session->n_past();
    return 0;
  }

  bool fail(Error e) {
    result.error = std::move(e);
    return false;
  }
};

void set_micros(capnp::List<uint64_t>::Builder list, const std::vector<uint64_t>& values) {
  for (unsigned i = 0; i < values.size(); ++i) list.set(i, values[i]);
}

}  // namespace

class SessionImpl final : public proto::Session::Server {
 public:
  SessionImpl(std::shared_ptr<State> state, const OpenRequest& request, std::unique_ptr<model::Session> engine,
              uint64_t reservation, ClientQuota::Lease lease, std::string scheduling)
      : state_(std::move(state)),
        request_(request),
        reservation_(reservation),
        lease_(std::move(lease)),
        scheduling_(std::move(scheduling)) {
    slot_ = std::make_shared<EngineSlot>();
    slot_->session = std::move(engine);
    state_->active_sessions++;
    state_->kv_reserved += reservation_;
    state_->sessions.insert(this);
    touch();
    if (RAND_bytes(session_nonce_.data(), static_cast<int>(session_nonce_.size())) != 1)
      throw_rpc_error(ErrorCode::Internal, "cannot draw random bytes for the session's nonce");
  }
  ~SessionImpl() { release("closed"); }

  void attach_next(kj::Own<NodeConnection> connection, proto::Session::Client session) {
    next_connection_ = kj::mv(connection);
    next_session_ = kj::mv(session);
  }
  // The last node of a ring: outputs go to the client's sink.
  void attach_sink(proto::OutputSink::Client sink) { sink_ = kj::mv(sink); }

  // Frees the KV cache and the reservation (now, whatever the client still holds) and drops the
  // downstream connection, which frees the sessions of the later hops.
  void release(const std::string& why) {
    if (!slot_) return;
    // Calls in flight (computing, or waiting for the next hop or the sink) end here, while the
    // connections they use still exist; their callers get this reason.
    canceler_.cancel(rpc_exception(Error{ErrorCode::Unavailable, "session " + why}));
    slot_->released = true;
    slot_.reset();
    waiting_.clear();  // their promises were cancelled above
    waiting_tokens_ = 0;
    released_because_ = why;
    state_->active_sessions--;
    state_->kv_reserved -= reservation_;
    state_->sessions.erase(this);
    lease_ = ClientQuota::Lease();
    sink_ = nullptr;
    next_session_ = nullptr;
    next_connection_ = nullptr;
  }

  bool idle_longer_than(std::chrono::seconds limit) const {
    return busy_call_ == 0 && slot_ && SteadyClock::now() - last_used_ > limit;
  }

  // A call that arrives while an earlier one holds the session (computing, or sending its output on)
  // waits for it, in arrival order (feature "pipelined": a client cuts a long prompt into
  // micro-batches and sends them without waiting, so that every node of the chain works at once).
  // Waiting calls count against the client's queued tokens like computing ones.
  kj::Promise<void> forward(ForwardContext context) override {
    if (!slot_) throw_rpc_error(ErrorCode::Unavailable, "session " + released_because_);
    // The transport reads messages up to twice the limit (see Connection), so that one a little too
    // big gets this answer instead of a closed connection.
    const uint64_t bytes = context.getParams().totalSize().wordCount * sizeof(capnp::word);
    if (bytes > state_->options.max_message_bytes)
      throw_rpc_error(ErrorCode::InvalidArgument, "the forward request takes " + std::to_string(bytes) +
                                                      " bytes, more than this node's limit of " +
                                                      std::to_string(state_->options.max_message_bytes) +
                                                      " bytes (NodeInfo.maxMessageBytes); send fewer rows per call");
    const auto& cfg = state_->model->config();
    SessionLimits limits{request_.block_begin, cfg.n_embd, cfg.n_vocab, state_->options.max_batch_tokens};
    auto request = validate_forward(context.getParams().getInput(), limits);
    if (!request) throw_rpc_error(request.error());
    const uint64_t cost = request->n_tokens;
    check_queue_quota(cost + waiting_tokens_);
    touch();  // only accepted work keeps a session alive: a refused call is no use of it
    ForwardCall call{request->start_position, request->output_last, request->call_id, request->upstream_micros,
                     request->per_token_sums,
                     request->n_tokens,
                     request->tokens.empty() ? hidden_digest(request->encoding, request->hidden)
                                             : tokens_digest(request->tokens)};
    if (busy_call_ == 0) return start_forward(context, kj::mv(*request), kj::mv(call), ++calls_);
    auto turn = kj::newPromiseAndFulfiller<uint64_t>();
    // The id done() handed this call, until start_forward() holds it (whose own end gives it back);
    // a caller that cancels in between gives it back here.
    auto handed = std::make_shared<uint64_t>(0);
    waiting_.push_back({cost, kj::mv(turn.fulfiller), handed});
    waiting_tokens_ += cost;
    return canceler_.wrap(
        turn.promise
            .then([this, context, request = kj::mv(*request), call = kj::mv(call), handed](uint64_t me) mutable {
              *handed = 0;
              return start_forward(context, kj::mv(request), kj::mv(call), me);
            })
            .attach(kj::defer([this, handed] {
              if (*handed) done(*handed);
            })));
  }

 private:
  // Runs a forward call that holds the session as call `me`.
  kj::Promise<void> start_forward(ForwardContext context, ForwardRequest request, ForwardCall call, uint64_t me) {
    if (!slot_) throw_rpc_error(ErrorCode::Unavailable, "session " + released_because_);
    const auto& cfg = state_->model->config();
    const uint64_t cost = request.n_tokens;
    const bool chained = next_connection_.get() != nullptr;
    const uint32_t keep_rows = chained ? request.n_tokens : request.output_last;
    busy_call_ = me;
    auto work = std::make_shared<ForwardJob>();
    work->slot = slot_;
    work->req = kj::mv(request);
    work->keep_rows = keep_rows;
    work->encoding = request_.encoding;
    work->n_embd = cfg.n_embd;
    work->slice = state_->options.compute_slice_tokens;
    if (state_->options.output_filter) work->output_filter = &state_->options.output_filter;
    const uint64_t first = work->next_rows();
    auto job = state_->worker->run_batched<JobResult>(
        scheduling_, cost, first, work,
        [work]() { return std::make_shared<ForwardJobResult>(std::move(work->result)); });
    return canceler_.wrap(job.then([this, context, call = kj::mv(call), me](JobResult result) mutable {
                                return after_compute(context, call, kj::mv(result), me);
                              })
                              .attach(kj::defer([this, me] {
                                done(me);
                                touch();
                              })));
  }

 public:
  kj::Promise<void> rollback(RollbackContext context) override {
    check_usable();
    const uint32_t n = context.getParams().getN();
    if (n > n_past_)
      throw_rpc_error(ErrorCode::InvalidArgument, "cannot roll back " + std::to_string(n) +
                                                      " positions: the session holds " + std::to_string(n_past_));
    check_queue_quota(1);
    touch();
    const uint64_t me = ++calls_;
    busy_call_ = me;
    auto job = state_->worker->run<JobResult>(scheduling_, 1, [slot = slot_, n]() {
      auto r = std::make_shared<ForwardJobResult>();
      if (auto rb = slot->session->rollback(n); !rb) r->error = rb.error();
      r->n_past = slot->session->n_past();
      return r;
    });
    return canceler_.wrap(job
        .then([this, context, n](JobResult result) mutable -> kj::Promise<void> {
          const ForwardJobResult& r = *result;
          if (r.error) throw_rpc_error(*r.error);
          n_past_ = r.n_past;
          context.getResults().setNPast(r.n_past);
          if (!next_connection_) return kj::READY_NOW;
          auto next = next_session_.rollbackRequest();
          next.setN(n);
          return with_timeout(state_->io->getTimer(), state_->options.call_timeout_s * kj::SECONDS,
                              "rollback on the next hop", next.send())
              .ignoreResult();
        })
        .attach(kj::defer([this, me] {
          done(me);
          touch();
        })));
  }

  kj::Promise<void> close(CloseContext) override {
    release("closed");
    return kj::READY_NOW;
  }

 private:
  // The compute of a forward is done: reply (direct, or the end of a chain), or send the output on
  // to the next hop or, at the end of a ring, to the client's sink.
  kj::Promise<void> after_compute(ForwardContext context, const ForwardCall& call, JobResult result, uint64_t me) {
    const ForwardJobResult& r = *result;
    if (r.error) throw_rpc_error(*r.error);
    if (!slot_) throw_rpc_error(ErrorCode::Unavailable, "session " + released_because_);
    n_past_ = r.n_past;
    std::vector<uint64_t> hops = call.upstream_micros;
    hops.push_back(r.micros);
    const bool ring = !request_.ring_token.empty();
    if (next_connection_) {
      auto next = next_session_.forwardRequest();
      auto input = next.initInput();
      fill_hidden(input.initInput().initHidden(), r.bytes, r.rows);
      input.setStartPosition(call.start_position);
      input.setOutputLast(call.output_last);
      input.setCallId(call.call_id);
      input.setPerTokenSums(call.per_token_sums);
      set_micros(input.initUpstreamComputeMicros(static_cast<unsigned>(hops.size())), hops);
      const std::string where = next_connection_->address().host_port();
      const uint64_t bytes = next.asReader().totalSize().wordCount * sizeof(capnp::word);
      const uint64_t limit = next_connection_->info().max_message_bytes;
      if (bytes > limit)
        throw_rpc_error(ErrorCode::InvalidArgument, "the " + std::to_string(r.rows) + " rows for the next hop " +
                                                        where + " take " + std::to_string(bytes) +
                                                        " bytes, more than the " + std::to_string(limit) +
                                                        " it reads per message; send fewer rows per call");
      auto sent = with_timeout(state_->io->getTimer(), state_->options.call_timeout_s * kj::SECONDS,
                               "forward on the next hop " + where, next.send());
      // Nothing here waits for this reply but to pass it back (chain) or its errors (ring): the next
      // call may start now, and the next hop gets the calls in the order they were sent.
      done(me);
      return sent.then(
          [context, result, ring](capnp::Response<proto::Session::ForwardResults> response) mutable {
            auto out = context.getResults().initOutput();
            if (!ring) out.setHidden(response.getOutput().getHidden());
            out.setNPast(result->n_past);
            out.setComputeMicros(result->micros);
            out.setHopComputeMicros(response.getOutput().getHopComputeMicros());
          },
          [where](kj::Exception&& e) { rethrow_with_context(e, "next hop " + where); });
    }
    if (!ring) {
      auto out = context.getResults().initOutput();
      fill_hidden(out.initHidden(), r.bytes, r.rows);
      out.setNPast(r.n_past);
      out.setComputeMicros(r.micros);
      set_micros(out.initHopComputeMicros(static_cast<unsigned>(hops.size())), hops);
      attest(out.initAttestation(), call, r);
      return kj::READY_NOW;
    }
    // The end of a ring: the output goes straight to the client; the reply only acknowledges.
    auto deliver = sink_.deliverRequest();
    deliver.setCallId(call.call_id);
    auto out = deliver.initOutput();
    fill_hidden(out.initHidden(), r.bytes, r.rows);
    out.setNPast(r.n_past);
    out.setComputeMicros(r.micros);
    set_micros(out.initHopComputeMicros(static_cast<unsigned>(hops.size())), hops);
    auto sent = with_timeout(state_->io->getTimer(), state_->options.call_timeout_s * kj::SECONDS,
                             "delivering the output to the client", deliver.send());
    done(me);
    return sent.then(
        [context, result, hops = kj::mv(hops)](auto) mutable {
          auto ack = context.getResults().initOutput();
          ack.setNPast(result->n_past);
          ack.setComputeMicros(result->micros);
          set_micros(ack.initHopComputeMicros(static_cast<unsigned>(hops.size())), hops);
        },
        [](kj::Exception&& e) { rethrow_with_context(e, "delivering the output to the client's sink"); });
  }

  // Signs this direct reply (net/forward_attestation.h): the call's input and output digests, its
  // positions, this session's nonce and range, the model.
  void attest(proto::ForwardAttestation::Builder out, const ForwardCall& call, const ForwardJobResult& r) const {
    ForwardAttestation a;
    a.model_cid_digest = attestation_model_digest(state_->description.model);
    a.model_file_size = state_->description.model.file_size;
    a.block_begin = request_.block_begin;
    a.block_end = request_.block_end;
    a.session_nonce = session_nonce_;
    a.position = r.n_past - call.n_tokens;
    a.n_tokens = call.n_tokens;
    a.output_rows = r.rows;
    a.input_sha256 = call.input_sha256;
    a.output_sha256 = hidden_digest(request_.encoding, r.bytes);
    a.per_token_sums = call.per_token_sums;
    if (auto s = sign_attestation(a, state_->identity); !s) throw_rpc_error(s.error());
    auto data = [](const auto& bytes) {
      return kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
    };
    out.setSessionNonce(data(a.session_nonce));
    out.setPosition(a.position);
    out.setNTokens(a.n_tokens);
    out.setOutputRows(a.output_rows);
    out.setInputSha256(data(a.input_sha256));
    out.setOutputSha256(data(a.output_sha256));
    out.setPublicKey(data(a.public_key));
    out.setSignature(data(a.signature));
    out.setPerTokenSums(a.per_token_sums);
  }

  // Call `me` no longer holds the session (a later call may hold it already): the oldest waiting call
  // that its caller still waits for takes it, before anything else can.
  void done(uint64_t me) {
    if (busy_call_ != me) return;
    busy_call_ = 0;
    while (!waiting_.empty()) {
      Waiter w = kj::mv(waiting_.front());
      waiting_.pop_front();
      waiting_tokens_ -= w.tokens;
      if (!w.turn->isWaiting()) continue;  // cancelled by its caller
      busy_call_ = ++calls_;
      *w.handed = busy_call_;
      w.turn->fulfill(kj::cp(busy_call_));
      return;
    }
  }

  void fill_hidden(proto::HiddenStates::Builder hidden, const std::vector<uint8_t>& bytes, uint32_t rows) const {
    hidden.setFormat(static_cast<proto::HiddenFormat>(request_.encoding));
    hidden.setNTokens(rows);
    hidden.setNEmbd(state_->model->config().n_embd);
    hidden.setData(kj::arrayPtr(bytes.data(), bytes.size()));
  }

  // For a rollback, which runs alone.
  void check_usable() const {
    if (!slot_) throw_rpc_error(ErrorCode::Unavailable, "session " + released_because_);
    if (busy_call_ != 0)
      throw_rpc_error(ErrorCode::InvalidArgument,
                      "a call is already running on this session; wait for its reply before the next one");
  }
  void touch() { last_used_ = SteadyClock::now(); }
  // Refuses a call whose cost would take this client's queued work past its limit.
  void check_queue_quota(uint64_t cost) const {
    const uint64_t limit = state_->options.max_queued_tokens_per_client;
    const uint64_t queued = state_->worker->outstanding_cost(scheduling_);
    if (queued + cost > limit)
      throw_rpc_error(ErrorCode::ResourceExhausted,
                      "too much work queued for one client: " + scheduling_ + " has " + std::to_string(queued) +
                          " tokens not yet computed and this call adds " + std::to_string(cost) + ", over the " +
                          std::to_string(limit) + " this node allows per client (--max-queued-tokens-per-client)");
  }

  std::shared_ptr<State> state_;
  OpenRequest request_;
  uint64_t reservation_;
  ClientQuota::Lease lease_;  // the client's count of sessions, given back at release
  std::string scheduling_;    // the client's key in the compute scheduler
  std::array<uint8_t, 16> session_nonce_{};  // names this session in its replies' attestations
  std::shared_ptr<EngineSlot> slot_;
  uint32_t n_past_ = 0;
  uint64_t calls_ = 0;      // numbers this session's calls
  uint64_t busy_call_ = 0;  // the call that holds the session (computing, or sending on); 0: none
  struct Waiter {
    uint64_t tokens;
    kj::Own<kj::PromiseFulfiller<uint64_t>> turn;  // given the call's id when it holds the session
    std::shared_ptr<uint64_t> handed;
  };
  std::deque<Waiter> waiting_;  // forward calls waiting for the session, in arrival order
  uint64_t waiting_tokens_ = 0;
  SteadyClock::time_point last_used_;
  std::string released_because_;
  // Connection before session: the session capability must go first.
  kj::Own<NodeConnection> next_connection_;
  proto::Session::Client next_session_ = nullptr;
  proto::OutputSink::Client sink_ = nullptr;  // the end of a ring: where outputs go
  kj::Canceler canceler_;  // wraps the calls in flight, which use `this` and the next hop
};

namespace {

// What the node tracks of one accepted connection besides its RPC system; shared with the RPC
// objects, which capnp may destroy after the connection itself.
struct ConnectionWatch {
  GuardedMessageStream* messages = nullptr;  // null once the connection is gone
  bool greeted = false;                      // hello (or openBlobs) succeeded
  std::set<SessionImpl*> sessions;           // opened through it, not yet destroyed
};

// Before hello a peer needs only Bootstrap and the hello call: a few hundred bytes.
constexpr MessageLimits kBeforeHelloLimits{64 << 10, 4};
// Capabilities a legitimate message carries: a sink (attachSink), a blob store, results.
constexpr uint32_t kMaxCapsPerMessage = 64;

MessageLimits after_hello_limits(const NodeOptions& o) {
  // Up to twice the processed size is read, so that a request a little too big gets an answer.
  return MessageLimits{2 * o.max_message_bytes, kMaxCapsPerMessage};
}

class NodeImpl final : public proto::Node::Server {
 public:
  NodeImpl(std::shared_ptr<State> state, ClientIdentity client, std::shared_ptr<ConnectionWatch> watch)
      : state_(std::move(state)), client_(std::move(client)), watch_(std::move(watch)) {}
  ~NodeImpl() {
    for (const auto& token : attached_) {
      auto it = state_->sinks.find(token);
      if (it != state_->sinks.end() && it->second.owner == this) state_->sinks.erase(it);
    }
  }

  kj::Promise<void> info(InfoContext context) override {
    write_node_info(state_->current(), context.getResults().initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> attachSink(AttachSinkContext context) override {
    auto params = context.getParams();
    auto token = validate_ring_token(params.getToken());
    if (!token) throw_rpc_error(token.error());
    if (state_->sinks.count(*token))
      throw_rpc_error(ErrorCode::AlreadyExists, "an output sink is already attached under this ring token");
    if (state_->sinks.size() >= state_->options.max_sessions)
      throw_rpc_error(ErrorCode::ResourceExhausted, "node is full: " + std::to_string(state_->sinks.size()) +
                                                           " output sinks wait for their sessions; try later");
    auto lease = state_->sink_quota.acquire(client_.key);
    if (!lease) throw_rpc_error(lease.error());
    state_->sinks.emplace(*token, PendingSink{params.getSink(), this, std::move(*lease)});
    attached_.push_back(std::move(*token));
    return kj::READY_NOW;
  }

  kj::Promise<void> payReceipts(PayReceiptsContext context) override {
    if (!state_->options.ledger)
      throw_rpc_error(ErrorCode::InvalidArgument, "this node keeps no credit ledger (no \"receipts\" feature)");
    auto list = context.getParams().getReceipts();
    if (list.size() > kMaxReceiptsPerCall)
      throw_rpc_error(ErrorCode::InvalidArgument, std::to_string(list.size()) + " receipts in one call; at most " +
                                                      std::to_string(kMaxReceiptsPerCall));
    const auto& d = state_->description;
    const auto now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    ReceiptExpectations expect;
    expect.node_id = d.peer_id;
    expect.model_id = receipt_model_id(d.model);
    expect.node_begin = d.block_begin;
    expect.node_end = d.block_end;
    expect.now = now;
    // Every receipt presented counts, valid or not: the signature checks cost the event loop too.
    if (auto rate = state_->receipt_rate->take(client_.key, list.size(), now); !rate) throw_rpc_error(rate.error());
    std::vector<WorkReceipt> receipts;
    for (unsigned i = 0; i < list.size(); ++i) {
      auto r = read_receipt(list[i]);
      if (r) {
        if (auto c = check_receipt(*r, expect); !c) r = c.error();
      }
      if (!r) throw_rpc_error(r.error().with_context("receipt " + std::to_string(i)));
      receipts.push_back(std::move(*r));
    }
    auto added = state_->options.ledger->add(receipts, now);
    if (!added) {
      std::fprintf(stderr, "omni node: cannot store receipts: %s\n", added.error().message.c_str());
      throw_rpc_error(added.error());
    }
    context.getResults().setAccepted(added->accepted);
    context.getResults().setDuplicates(added->duplicates);
    return kj::READY_NOW;
  }

  kj::Promise<void> openSession(OpenSessionContext context) override {
    const auto& d = state_->description;
    NodeLimits limits{d.block_begin, d.block_end, d.model.n_layer, d.max_length};
    auto request = validate_open(context.getParams().getParams(), limits);
    if (!request) throw_rpc_error(request.error());
    // The last node of a ring delivers to the sink the client attached here under the token.
    const bool ring_end = !request->ring_token.empty() && request->downstream.empty();
    if (ring_end && !state_->sinks.count(request->ring_token))
      throw_rpc_error(ErrorCode::NotFound,
                      "no output sink is attached to this node under the session's ring token (the client attaches "
                      "it with Node.attachSink on its own connection to the last node before opening the session)");
    const auto& o = state_->options;
    if (state_->paused) throw_rpc_error(ErrorCode::Unavailable, "node paused: " + *state_->paused + "; try another node");
    if (state_->active_sessions >= o.max_sessions)
      throw_rpc_error(ErrorCode::ResourceExhausted, "node is full: " + std::to_string(state_->active_sessions) +
                                                           " of " + std::to_string(o.max_sessions) +
                                                           " sessions are open; try another node or later");
    const uint64_t need = state_->kv_bytes(request->block_begin, request->block_end, request->max_length);
    if (state_->kv_reserved + need > o.max_kv_bytes)
      throw_rpc_error(ErrorCode::ResourceExhausted,
                      "node is full: the session needs " + mib(need) + " of KV cache and " +
                          mib(o.max_kv_bytes - state_->kv_reserved) + " of " + mib(o.max_kv_bytes) +
                          " are free; ask for a shorter maxLength, another node, or later");
    auto lease = state_->session_quota.acquire(client_.key);
    if (!lease) throw_rpc_error(lease.error());
    auto engine = model::Session::create(*state_->model, request->block_begin, request->block_end, request->max_length);
    if (!engine) throw_rpc_error(engine.error());
    auto session = kj::heap<SessionImpl>(state_, *request, std::move(*engine), need, std::move(*lease),
                                         client_.scheduling);
    if (ring_end) {
      auto it = state_->sinks.find(request->ring_token);
      session->attach_sink(kj::mv(it->second.sink));
      state_->sinks.erase(it);
    }
    session = tracked(kj::mv(session));
    if (request->downstream.empty()) {
      context.getResults().setSession(kj::mv(session));
      return kj::READY_NOW;
    }
    // Chain mode: open the rest of the chain before answering, so a bad hop fails the open.
    const HopRequest hop = request->downstream.front();
    auto rest = std::vector<HopRequest>(request->downstream.begin() + 1, request->downstream.end());
    const auto encoding = request->encoding;
    const uint32_t max_length = request->max_length;
    const std::string where = hop.address.host_port();
    std::vector<std::string> features{"chain", std::string("hidden-") + hidden_encoding_name(encoding)};
    if (!request->ring_token.empty()) features.push_back("ring");
    return NodeConnection::connect(*state_->io, *state_->tls, hop.address, features,
                                   state_->options.connect_timeout_s * kj::SECONDS, state_->options.bandwidth)
        .catch_([state = state_, hop, started = state_->io->getTimer().now()](
                    kj::Exception&& e) -> kj::Promise<kj::Own<NodeConnection>> {
          // Not (yet) a node proven to hold the hop's id: whatever went wrong (refused, timed out,
          // not TLS, another id) is told to the caller the same way, so that the text tells
          // nothing about that address; the log keeps it. Past the budget of fast answers, no
          // sooner than a timeout would, so that the timing does not tell either.
          std::fprintf(stderr, "omni node: next hop %s (%s) unreachable: %s\n", hop.address.host_port().c_str(),
                       hop.address.peer_id.c_str(), to_error(e).message.c_str());
          const kj::TimePoint now = state->io->getTimer().now();
          const kj::TimePoint until =
              state->take_fast_hop_failure(now) ? now : started + state->options.connect_timeout_s * kj::SECONDS;
          return state->io->getTimer().atTime(until).then([]() -> kj::Own<NodeConnection> {
            throw_rpc_error(ErrorCode::Unavailable, "next hop unreachable");
          });
        })
        .then([this, hop, rest, encoding, max_length, token = request->ring_token](kj::Own<NodeConnection> connection) {
          if (!(connection->info().model == state_->description.model))
            throw_rpc_error(ErrorCode::InvalidArgument,
                            "it serves a different model: " + connection->info().model.to_string());
          auto open = connection->node().openSessionRequest();
          auto p = open.initParams();
          p.setBlockBegin(hop.block_begin);
          p.setBlockEnd(hop.block_end);
          p.setMaxLength(max_length);
          p.setHiddenFormat(static_cast<proto::HiddenFormat>(encoding));
          auto hops = p.initDownstream(static_cast<unsigned>(rest.size()));
          for (unsigned i = 0; i < rest.size(); ++i) {
            hops[i].setAddress(rest[i].address.host_port().c_str());
            hops[i].setPeerId(rest[i].address.peer_id.c_str());
            hops[i].setBlockBegin(rest[i].block_begin);
            hops[i].setBlockEnd(rest[i].block_end);
          }
          if (!token.empty())
            p.setRingToken(kj::arrayPtr(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
          auto sent = open.send();
          return sent.then([connection = kj::mv(connection)](auto response) mutable {
            return std::make_pair(kj::mv(connection), response.getSession());
          });
        })
        .then(
            [context, session = kj::mv(session)](
                std::pair<kj::Own<NodeConnection>, proto::Session::Client> next) mutable {
              session->attach_next(kj::mv(next.first), kj::mv(next.second));
              context.getResults().setSession(kj::mv(session));
            },
            [where](kj::Exception&& e) {
              rethrow_with_context(e, "cannot open the next hop " + where);
            });
  }

 private:
  // The session, counted as its connection's until destroyed (ConnectionWatch).
  kj::Own<SessionImpl> tracked(kj::Own<SessionImpl> session) {
    SessionImpl* key = session.get();
    watch_->sessions.insert(key);
    return session.attach(kj::defer([watch = watch_, key] { watch->sessions.erase(key); }));
  }

  std::shared_ptr<State> state_;
  ClientIdentity client_;
  std::shared_ptr<ConnectionWatch> watch_;
  std::vector<std::string> attached_;  // tokens of the sinks attached through this connection
};

class GateImpl final : public proto::Gate::Server {
 public:
  GateImpl(std::shared_ptr<State> state, ClientIdentity client, std::shared_ptr<ConnectionWatch> watch)
      : state_(std::move(state)), client_(std::move(client)), watch_(std::move(watch)) {}

  kj::Promise<void> hello(HelloContext context) override {
    check(context.getParams().getHello());
    greeted();
    auto results = context.getResults();
    results.setNode(kj::heap<NodeImpl>(state_, client_, watch_));
    write_node_info(state_->current(), results.initInfo());
    return kj::READY_NOW;
  }

  kj::Promise<void> openBlobs(OpenBlobsContext context) override {
    check(context.getParams().getHello());
    if (!state_->options.blob_service)
      throw_rpc_error(ErrorCode::InvalidArgument, "this node does not serve blobs (no \"blobs\" feature)");
    greeted();
    context.getResults().setBlobs(state_->options.blob_service());
    return kj::READY_NOW;
  }

 private:
  // The peer may now send messages as large as the node processes.
  void greeted() {
    watch_->greeted = true;
    if (watch_->messages) watch_->messages->set_limits(after_hello_limits(state_->options));
  }

  // Version and features (this node's, "blobs" included when it serves them); --allow-peers was
  // checked when the connection was accepted.
  void check(proto::Hello::Reader hello) {
    if (hello.getProtocolVersion() != proto::PROTOCOL_VERSION)
      throw_rpc_error(ErrorCode::InvalidArgument, "protocol version mismatch: the caller speaks version " +
                      std::to_string(hello.getProtocolVersion()) + ", this node speaks version " +
                      std::to_string(proto::PROTOCOL_VERSION));
    const auto& supported = state_->description.features;
    for (auto feature : hello.getRequiredFeatures()) {
      if (std::find(supported.begin(), supported.end(), feature.cStr()) == supported.end()) {
        std::string list;
        for (const auto& f : supported) list += (list.empty() ? "" : ", ") + f;
        throw_rpc_error(ErrorCode::InvalidArgument, "this node does not support the feature '" +
                                                        std::string(feature.cStr()) + "' (it supports " + list + ")");
      }
    }
  }

  std::shared_ptr<State> state_;
  ClientIdentity client_;
  std::shared_ptr<ConnectionWatch> watch_;
};

// One accepted connection: its TLS stream, the guarded message stream over it, and its RPC system,
// alive until the peer goes away or the node closes it (watch_connection).
struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, const std::shared_ptr<State>& state, ClientIdentity client)
      : stream(kj::mv(s)),
        watch(std::make_shared<ConnectionWatch>()),
        messages(*stream, kBeforeHelloLimits, state->receive_budget, state->io->getTimer()),
        network(messages, capnp::rpc::twoparty::Side::SERVER,
                reader_options(after_hello_limits(state->options).max_bytes)),
        rpc(capnp::makeRpcServer(network, kj::heap<GateImpl>(state, std::move(client), watch))) {
    watch->messages = &messages;
    messages.set_unsent_bytes([this] { return network.getCurrentQueueSize(); });
  }
  ~Connection() { watch->messages = nullptr; }
  kj::Own<kj::AsyncIoStream> stream;
  std::shared_ptr<ConnectionWatch> watch;
  GuardedMessageStream messages;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class ConnectionErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    std::fprintf(stderr, "omni node: connection ended: %s\n", to_error(e).message.c_str());
  }
};

// Resolves when `connection` should be closed: no hello in time, a message that stopped arriving,
// or no message for the idle timeout while it holds no open session.
kj::Promise<void> watch_connection(std::shared_ptr<State> state, Connection& connection,
                                   GuardedMessageStream::Clock::time_point tls_done) {
  return state->io->getTimer().afterDelay(1 * kj::SECONDS).then([state, &connection, tls_done]() -> kj::Promise<void> {
    using std::chrono::seconds;
    const auto now = GuardedMessageStream::Clock::now();
    const auto& o = state->options;
    const ConnectionWatch& w = *connection.watch;
    std::string why;
    if (!w.greeted && now - tls_done > seconds(o.hello_timeout_s)) {
      why = "no hello within " + std::to_string(o.hello_timeout_s) + " s of TLS";
    } else if (auto partial = connection.messages.partial_since();
               partial && now - *partial > seconds(o.hello_timeout_s)) {
      why = "a message stopped arriving for " + std::to_string(o.hello_timeout_s) + " s";
    } else if (connection.network.getOutgoingMessageWaitTime() > o.connection_idle_timeout_s * kj::SECONDS) {
      why = "the peer has not read its replies for " + std::to_string(o.connection_idle_timeout_s) + " s";
    } else if (w.greeted && !partial &&
               now - connection.messages.last_activity() > seconds(o.connection_idle_timeout_s)) {
      bool holds_session = false;
      for (SessionImpl* s : w.sessions) holds_session = holds_session || state->sessions.count(s) > 0;
      if (!holds_session) why = "idle for " + std::to_string(o.connection_idle_timeout_s) + " s with no open session";
    }
    if (why.empty()) return watch_connection(state, connection, tls_done);
    std::fprintf(stderr, "omni node: closing a connection: %s\n", why.c_str());
    return kj::READY_NOW;
  });
}

// Tells a refused peer why in a Cap'n Proto Abort (its RPC system fails every call with `why`),
// then closes after it has read it (or after a few seconds): no RPC system, no message of the
// peer's is read.
kj::Promise<void> refuse(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> stream, const Error& why) {
  auto message = kj::heap<capnp::MallocMessageBuilder>(256);
  auto abort = message->initRoot<capnp::rpc::Message>().initAbort();
  const kj::Exception e = rpc_exception(why);
  abort.setReason(e.getDescription());
  abort.setType(static_cast<capnp::rpc::Exception::Type>(e.getType()));
  auto& s = *stream;
  auto sent = capnp::writeMessage(s, *message).then([&s] {
    s.shutdownWrite();
    // Drain what the peer sent meanwhile, so that closing does not reset the connection before
    // the peer has read the reason.
    auto sink = kj::heapArray<kj::byte>(4096);
    auto* buffer = sink.begin();
    return s.tryRead(buffer, sink.size(), sink.size()).ignoreResult().attach(kj::mv(sink));
  });
  return with_timeout(state->io->getTimer(), 3 * kj::SECONDS, "refusing a connection", kj::mv(sent))
      .catch_([](kj::Exception&&) {})
      .attach(kj::mv(message), kj::mv(stream));
}

// Keepalive: a peer that vanished without a FIN is found within about two minutes even when the
// connection holds a session (and so is not closed as idle).
void tune_accepted_socket(kj::AsyncIoStream& tcp) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    int one = 1, idle = 60, interval = 10, count = 6;
    tcp.setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    tcp.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    tcp.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    tcp.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    tcp.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  })) {
    (void)e;  // not a TCP socket (tests): nothing to tune
  }
}

// Where a connection comes from, as the node counts it: `connection` for ConnectionLimits
// (source_key(); "other" without an address), `client` for the per-client quotas and the compute
// scheduler (address_key(); empty without an address: counted by peer id only).
struct SourceKeys {
  std::string connection = "other";
  std::string client;
};

SourceKeys source_of(kj::AsyncIoStream& tcp) {
  sockaddr_storage address{};
  kj::uint length = sizeof address;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { tcp.getpeername(reinterpret_cast<sockaddr*>(&address), &length); })) {
    (void)e;  // not a socket with an address (tests)
    return {};
  }
  const auto* a = reinterpret_cast<const sockaddr*>(&address);
  return {source_key(a, static_cast<socklen_t>(length)), address_key(a, static_cast<socklen_t>(length))};
}

// At most this many refused connections are given their reason at once (each costs a TLS
// handshake); the rest are closed at once.
constexpr uint32_t kMaxRefusalsInFlight = 16;

void admit(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> tcp, kj::TaskSet& tasks) {
  tune_accepted_socket(*tcp);
  SourceKeys keys = source_of(*tcp);
  tcp = throttle(kj::mv(tcp), state->options.bandwidth, state->io->getTimer());
  const std::string& source = keys.connection;
  auto slot = state->connections->admit(source);
  auto& timer = state->io->getTimer();
  const kj::Duration tls_deadline = state->options.hello_timeout_s * kj::SECONDS;
  if (!slot) {
    if (state->refusals_in_flight >= kMaxRefusalsInFlight) return;  // dropping tcp closes it
    state->refusals_in_flight++;
    std::fprintf(stderr, "omni node: refused a connection from %s: %s\n", source.c_str(), slot.error().message.c_str());
    auto handshake = with_timeout(timer, tls_deadline, "TLS handshake", state->tls->accept(kj::mv(tcp)));
    tasks.add(handshake
                  .then([state, why = slot.error()](TlsPeer peer) { return refuse(state, kj::mv(peer.stream), why); })
                  .catch_([](kj::Exception&&) {})
                  .attach(kj::defer([state] { state->refusals_in_flight--; })));
    return;
  }
  auto handshake = with_timeout(timer, tls_deadline, "TLS handshake", state->tls->accept(kj::mv(tcp)));
  std::string address = state->options.limit_by_address ? std::move(keys.client) : std::string();
  tasks.add(handshake.then([state, slot = kj::mv(*slot), address = std::move(address)](
                               TlsPeer peer) mutable -> kj::Promise<void> {
    ClientIdentity client{{peer.peer_id, address}, address.empty() ? "peer " + peer.peer_id : address};
    const auto& allow = state->options.allow_peers;
    if (allow && !allow->count(client.key.peer_id)) {
      std::fprintf(stderr, "omni node: refused peer %s: not on --allow-peers\n", client.key.peer_id.c_str());
      Error why{ErrorCode::PermissionDenied,
                "access denied: peer " + client.key.peer_id + " is not on this node's --allow-peers list"};
      return refuse(state, kj::mv(peer.stream), why).attach(kj::mv(slot));
    }
    auto connection = kj::heap<Connection>(kj::mv(peer.stream), state, std::move(client));
    auto done = connection->network.onDisconnect()
                    .then([&messages = connection->messages, id = peer.peer_id] {
                      if (const auto& why = messages.refusal())
                        std::fprintf(stderr, "omni node: closed the connection of peer %s: %s\n", id.c_str(),
                                     why->message.c_str());
                    })
                    .exclusiveJoin(watch_connection(state, *connection, GuardedMessageStream::Clock::now()));
    return done.attach(kj::mv(connection), kj::mv(slot));
  }));
}

kj::Promise<void> accept_loop(std::shared_ptr<State> state, kj::ConnectionReceiver& listener, kj::TaskSet& tasks) {
  // kj's accept() may throw at once (it calls accept4 before waiting): evalNow makes that a broken
  // promise like any later failure.
  return kj::evalNow([&listener] { return listener.accept(); })
      .then(
          [state, &listener, &tasks](kj::Own<kj::AsyncIoStream> tcp) mutable {
            if (state->accept_failing) {
              state->accept_failing = false;
              std::fprintf(stderr, "omni node: accepting connections again\n");
            }
            admit(state, kj::mv(tcp), tasks);
            return accept_loop(state, listener, tasks);
          },
          [state, &listener, &tasks](kj::Exception&& e) {
            // Out of file descriptors (EMFILE/ENFILE: ResourceExhausted) or another failure of
            // accept(): the connections waiting in the backlog are taken once descriptors are free
            // again; until then every other connection keeps being served.
            if (!state->accept_failing) {
              state->accept_failing = true;
              const Error error = to_error(e);
              std::fprintf(stderr, "omni node: cannot accept connections (%s: %s); retrying every 100 ms\n",
                           to_string(error.code), error.message.c_str());
            }
            return state->io->getTimer().afterDelay(100 * kj::MILLISECONDS).then([state, &listener, &tasks] {
              return accept_loop(state, listener, tasks);
            });
          });
}

kj::Promise<void> expiry_loop(std::shared_ptr<State> state) {
  const auto limit = std::chrono::seconds(state->options.idle_timeout_s);
  const uint64_t period_ms = std::clamp<uint64_t>(state->options.idle_timeout_s * 250ull, 100, 5000);
  return state->io->getTimer().afterDelay(period_ms * kj::MILLISECONDS).then([state, limit]() {
    std::vector<SessionImpl*> idle;
    for (SessionImpl* s : state->sessions)
      if (s->idle_longer_than(limit)) idle.push_back(s);
    for (SessionImpl* s : idle)
      s->release("expired after " + std::to_string(state->options.idle_timeout_s) + " s idle");
    return expiry_loop(state);
  });
}

}  // namespace

Result<std::set<std::string>> read_allow_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{ErrorCode::NotFound, "cannot read the allow list " + path};
  std::set<std::string> ids;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    std::string id = line.substr(first, last - first + 1);
    if (!is_peer_id(id))
      return Error{ErrorCode::InvalidArgument, path + ":" + std::to_string(n) + ": '" + id + "' is not a peer id"};
    ids.insert(std::move(id));
  }
  return ids;
}

Result<std::unique_ptr<NodeServer>> NodeServer::create(const NodeOptions& options, Identity identity) {
  auto state = std::make_shared<State>();
  state->options = options;
  if (options.max_sessions == 0) return Error{ErrorCode::InvalidArgument, "--max-sessions must be at least 1"};
  if (options.idle_timeout_s == 0) return Error{ErrorCode::InvalidArgument, "--idle-timeout must be at least 1 second"};
  if (options.max_batch_tokens == 0) return Error{ErrorCode::InvalidArgument, "max batch tokens must be at least 1"};
  if (options.compute_slice_tokens < 2)
    return Error{ErrorCode::InvalidArgument, "--compute-slice must be at least 2 tokens"};
  if (options.max_pass_tokens == 0)
    return Error{ErrorCode::InvalidArgument, "--max-batch-tokens must be at least 1"};
  auto& o = state->options;
  if (o.max_sessions_per_client == 0) o.max_sessions_per_client = (o.max_sessions + 1) / 2;
  if (o.max_sinks_per_client == 0) o.max_sinks_per_client = o.max_sessions_per_client;
  if (o.max_queued_tokens_per_client == 0) o.max_queued_tokens_per_client = 4ull * o.max_batch_tokens;
  if (o.max_queued_tokens_per_client < o.max_batch_tokens)
    return Error{ErrorCode::InvalidArgument, "--max-queued-tokens-per-client (" +
                                                 std::to_string(o.max_queued_tokens_per_client) +
                                                 ") must be at least the batch size (" +
                                                 std::to_string(o.max_batch_tokens) + ")"};
  state->session_quota = ClientQuota("sessions", "--max-sessions-per-client", o.max_sessions_per_client);
  state->sink_quota = ClientQuota("waiting output sinks", "--max-sinks-per-client", o.max_sinks_per_client);
  if (options.load_model) {
    auto model = options.load_model();
    if (!model) return model.error();
    state->model = std::move(*model);
    const uint32_t n_layer = state->model->config().n_layer;
    if (options.block_begin >= options.block_end || options.block_end > n_layer)
      return Error{ErrorCode::InvalidArgument,
                   "blocks " + std::to_string(options.block_begin) + ":" + std::to_string(options.block_end) +
                       " are not a non-empty range within the model's " + std::to_string(n_layer) + " blocks"};
  } else {
    auto probe = model::Model::load(options.model_path, model::LoadRange{0, 0, false, false});
    if (!probe) return probe.error();
    const uint32_t n_layer = (*probe)->config().n_layer;
    if (options.block_begin >= options.block_end || options.block_end > n_layer)
      return Error{ErrorCode::InvalidArgument,
                   "blocks " + std::to_string(options.block_begin) + ":" + std::to_string(options.block_end) +
                       " are not a non-empty range within the model's " + std::to_string(n_layer) + " blocks"};
    probe->reset();
    auto model = model::Model::load(
        options.model_path, model::LoadRange{options.block_begin, options.block_end, options.block_begin == 0, false});
    if (!model) return model.error();
    state->model = std::move(*model);
  }
  const auto& cfg = state->model->config();
  const int threads = options.threads > 0 ? options.threads
                                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  state->pool = std::make_unique<kernels::ThreadPool>(threads);
  auto tls = TlsContext::create(identity);
  if (!tls) return tls.error();
  state->tls = std::move(*tls);
  state->identity = std::move(identity);

  NodeDescription& d = state->description;
  d.peer_id = state->identity.peer_id();
  d.protocol_version = proto::PROTOCOL_VERSION;
  d.features = supported_features();
  d.features.push_back("ring");  // Node.attachSink and ring sessions: implemented in this file
  d.features.push_back("pipelined");  // SessionImpl queues a session's calls in order (see there)
  if (options.blob_service) d.features.push_back("blobs");
  if (options.ledger) d.features.push_back("receipts");
  if (options.model_identity) {
    d.model = *options.model_identity;
  } else {
    auto identified = identify_model(*state->model);
    if (!identified) return identified.error();
    d.model = std::move(*identified);
  }
  d.block_begin = options.block_begin;
  d.block_end = options.block_end;
  d.max_sessions = options.max_sessions;
  d.max_length = options.max_length ? options.max_length : std::max<uint32_t>(cfg.n_ctx_train, 1);
  state->options.max_length = d.max_length;
  d.max_batch_tokens = options.max_batch_tokens;
  d.kv_bytes_per_position = state->kv_bytes(options.block_begin, options.block_end, 1);
  d.max_message_bytes = options.max_message_bytes;
  d.max_sessions_per_client = state->options.max_sessions_per_client;
  d.max_queued_tokens_per_client = state->options.max_queued_tokens_per_client;
  if (options.hello_timeout_s == 0 || options.connection_idle_timeout_s == 0)
    return Error{ErrorCode::InvalidArgument, "--hello-timeout and --connection-idle-timeout must be at least 1 second"};
  if (options.max_connections == 0 || options.max_connections_per_source == 0)
    return Error{ErrorCode::InvalidArgument, "--max-connections and --max-connections-per-ip must be at least 1"};
  if (options.max_receive_buffer_bytes < 2 * options.max_message_bytes)
    return Error{ErrorCode::InvalidArgument, "--max-receive-buffer-mib must hold at least one largest message (" +
                                                 mib(2 * options.max_message_bytes) + ")"};
  state->receive_budget = std::make_shared<ReceiveBudget>(options.max_receive_buffer_bytes);
  state->connections = std::make_unique<ConnectionLimits>(options.max_connections, options.max_connections_per_source);
  state->worker = std::make_unique<ComputeWorker>(options.compute_slice_tokens, options.max_pass_tokens, *state->pool);
  if (options.max_receipts_per_minute == 0)
    return Error{ErrorCode::InvalidArgument, "--max-receipts-per-minute must be at least 1"};
  state->receipt_rate = std::make_unique<ReceiptRate>(options.max_receipts_per_minute);
  return std::unique_ptr<NodeServer>(new NodeServer(std::move(state)));
}

NodeServer::~NodeServer() = default;

const std::string& NodeServer::peer_id() const { return state_->description.peer_id; }

uint32_t NodeServer::active_sessions() const { return state_->active_sessions; }

void NodeServer::set_paused(std::optional<std::string> why) { state_->paused = std::move(why); }

Result<void> NodeServer::serve(kj::AsyncIoContext& io, const std::string& listen,
                               const std::function<void(const std::string&)>& on_listening, kj::Promise<void> stop) {
  auto address = parse_listen_address(listen);
  if (!address) return address.error();
  state_->io = io.provider.get();
  Result<void> result;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto addr = io.provider->getNetwork().parseAddress(address->host_port().c_str()).wait(io.waitScope);
    auto listener = addr->listen();
    PeerAddress bound = *address;
    bound.port = static_cast<uint16_t>(listener->getPort());
    on_listening(bound.host_port());
    ConnectionErrors errors;
    kj::TaskSet tasks(errors);
    accept_loop(state_, *listener, tasks)
        .exclusiveJoin(expiry_loop(state_))
        .exclusiveJoin(kj::mv(stop))
        .wait(io.waitScope);
    // Stopped: end the sessions' calls in flight and drop the sinks while the connections and the
    // event loop they need still exist (capnp may keep calls alive until the loop itself goes).
    for (SessionImpl* s : std::vector<SessionImpl*>(state_->sessions.begin(), state_->sessions.end()))
      s->release("closed: the node stopped");
    state_->sinks.clear();
  })) {
    result = to_error(*e).with_context("node on " + listen);
  }
  return result;
}

}  // namespace omni::net
