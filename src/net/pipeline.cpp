#include "net/pipeline.h"

#include <kj/async-io.h>

#include <cstdio>

#include "net/errors.h"
#include "net/identity.h"
#include "net/node_connection.h"
#include "net/node_info.h"
#include "net/request_validation.h"
#include "net/tls.h"

namespace omni::net {
namespace {

constexpr size_t kPromptBatch = 512;  // as the local path: prompt batches change rounding, keep them equal

class LocalPipeline final : public Pipeline {
 public:
  LocalPipeline(std::unique_ptr<model::Session> session, kernels::ThreadPool& pool)
      : session_(std::move(session)), pool_(pool) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    return session_->forward(tokens, {}, model::Output::LastLogits, logits, pool_);
  }
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

struct Hop {
  NodeConnection* connection;
  uint32_t block_begin, block_end;
};

class RemotePipeline final : public Pipeline {
 public:
  RemotePipeline(const model::Model& model, const RemoteOptions& options, kernels::ThreadPool& pool)
      : model_(model), options_(options), pool_(pool), io_(kj::setupAsyncIo()) {}

  ~RemotePipeline() noexcept override {
    // Capabilities and connections belong to io_'s event loop: drop them while it still exists.
    sessions_.clear();
    connections_.clear();
  }

  Result<void> open(uint32_t n_ctx) {
    auto identity = options_.data_dir.empty() ? Identity::generate() : Identity::load_or_create(options_.data_dir);
    if (!identity) return identity.error();
    auto tls = TlsContext::create(*identity);
    if (!tls) return tls.error();
    tls_ = std::move(*tls);
    auto head = model::Session::create(model_, model_.config().n_layer, model_.config().n_layer, n_ctx);
    if (!head) return head.error();
    head_ = std::move(*head);
    Result<void> result;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { result = open_sessions(n_ctx); })) {
      return Error{describe(*e)};
    }
    return result;
  }

  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    std::vector<uint8_t> last_hidden;
    Result<void> result;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { result = run_hops(tokens, last_hidden); })) {
      return Error{describe(*e)};
    }
    if (!result) return result;
    std::vector<float> hidden;
    if (auto d = decode_hidden(last_hidden, 1, model_.config().n_embd, options_.encoding, hidden); !d)
      return Error{"the last node's reply: " + d.error().message};
    ++calls_;
    return head_->forward({}, hidden, model::Output::LastLogits, logits, pool_);
  }

  size_t max_batch() const override { return max_batch_; }

  std::string summary() const override {
    char b[256];
    std::snprintf(b, sizeof b, "%zu nodes, route %s, %s hidden states, %llu calls, %.1f KiB sent, %.1f KiB received",
                  hops_.size(), options_.route == Route::Chain ? "chain" : "direct",
                  hidden_encoding_name(options_.encoding), static_cast<unsigned long long>(calls_),
                  bytes_sent_ / 1024.0, bytes_received_ / 1024.0);
    return b;
  }

 private:
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  Result<void> open_sessions(uint32_t n_ctx) {
    const ModelIdentity local = identify_model(model_);
    std::vector<std::string> features{std::string("hidden-") + hidden_encoding_name(options_.encoding)};
    if (options_.route == Route::Chain) features.push_back("chain");
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
        return Error{"node " + c->address().host_port() + " serves " + info.model.to_string() +
                     ", but the local model file is " + local.to_string()};
      if (info.max_length < n_ctx)
        return Error{"node " + c->address().host_port() + " allows sessions of at most " +
                     std::to_string(info.max_length) + " positions; this run needs " + std::to_string(n_ctx)};
      connections_.push_back(kj::mv(c));
    }
    // Greedy cover of [0, n_layer): at each block, the node that serves it and reaches furthest.
    const uint32_t n_layer = model_.config().n_layer;
    max_batch_ = kPromptBatch;
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
        return Error{"no node serves block " + std::to_string(at) + " of " + std::to_string(n_layer) +
                     " (the nodes serve:" + served + ")"};
      }
      hops_.push_back({best, at, best->info().block_end});
      max_batch_ = std::min<size_t>(max_batch_, best->info().max_batch_tokens);
      log("blocks [" + std::to_string(at) + ", " + std::to_string(best->info().block_end) + ") on " +
          best->address().host_port());
      at = best->info().block_end;
    }
    if (max_batch_ == 0) return Error{"a node accepts no tokens per call"};
    if (options_.route == Route::Chain) {
      sessions_.push_back(open_session(0, n_ctx, /*with_downstream=*/true));
    } else {
      for (size_t i = 0; i < hops_.size(); ++i) sessions_.push_back(open_session(i, n_ctx, false));
    }
    return {};
  }

  proto::Session::Client open_session(size_t hop_index, uint32_t n_ctx, bool with_downstream) {
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
        d.setAddress(hops_[i].connection->address().host_port().c_str());
        d.setPeerId(hops_[i].connection->peer_id().c_str());  // the id this client verified itself
        d.setBlockBegin(hops_[i].block_begin);
        d.setBlockEnd(hops_[i].block_end);
      }
    }
    const std::string where = hop.connection->address().host_port();
    auto response = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                 "opening a session on " + where, request.send())
                        .catch_([where](kj::Exception&& e) -> capnp::Response<proto::Node::OpenSessionResults> {
                          throw_rpc_error(e.getType(), "node " + where + ": " + describe(e));
                        })
                        .wait(io_.waitScope);
    return response.getSession();
  }

  // Sends the tokens through the hops; `last_hidden` gets the final node's encoded last row.
  Result<void> run_hops(std::span<const int32_t> tokens, std::vector<uint8_t>& last_hidden) {
    const size_t rounds = options_.route == Route::Chain ? 1 : hops_.size();
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
      input.setOutputLast(last ? 1 : 0);
      const std::string where = options_.route == Route::Chain ? "the chain (first node " + hops_[0].connection->address().host_port() + ")"
                                                               : "node " + hops_[i].connection->address().host_port();
      auto response = with_timeout(io_.provider->getTimer(), options_.call_timeout_s * kj::SECONDS,
                                   "forward on " + where, request.send())
                          .catch_([where](kj::Exception&& e) -> capnp::Response<proto::Session::ForwardResults> {
                            throw_rpc_error(e.getType(), where + ": " + describe(e));
                          })
                          .wait(io_.waitScope);
      auto hidden = response.getOutput().getHidden();
      const uint32_t rows = last ? 1 : static_cast<uint32_t>(tokens.size());
      auto encoding = validate_hidden(hidden, model_.config().n_embd, rows);
      if (!encoding) return Error{where + " replied with bad hidden states: " + encoding.error().message};
      if (*encoding != options_.encoding || hidden.getNTokens() != rows)
        return Error{where + " replied with " + std::to_string(hidden.getNTokens()) + " rows in " +
                     hidden_encoding_name(*encoding) + ", expected " + std::to_string(rows) + " in " +
                     hidden_encoding_name(options_.encoding)};
      auto data = hidden.getData();
      bytes_received_ += data.size();
      carried.assign(data.begin(), data.end());
      carried_rows = rows;
    }
    last_hidden = std::move(carried);
    return {};
  }

  const model::Model& model_;
  RemoteOptions options_;
  kernels::ThreadPool& pool_;
  kj::AsyncIoContext io_;
  std::shared_ptr<TlsContext> tls_;
  std::vector<kj::Own<NodeConnection>> connections_;
  std::vector<Hop> hops_;
  std::vector<proto::Session::Client> sessions_;
  std::unique_ptr<model::Session> head_;
  size_t max_batch_ = kPromptBatch;
  uint64_t calls_ = 0, bytes_sent_ = 0, bytes_received_ = 0;
};

}  // namespace

Result<Route> parse_route(std::string_view name) {
  if (name == "chain") return Route::Chain;
  if (name == "direct") return Route::Direct;
  return Error{"unknown route '" + std::string(name) + "' (choose chain or direct)"};
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
