// Test helpers for src/net: a NodeServer running in-process on its own thread and event loop, and
// a client (its own event loop and identity) that talks the node protocol to it directly.
#pragma once

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <future>
#include <string>
#include <thread>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/node_server.h"
#include "net/tls.h"

namespace omni::net {

inline const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

// Runs a NodeServer on a thread until destroyed.
class TestNode {
 public:
  explicit TestNode(NodeOptions options) {
    std::promise<std::string> address;
    auto ready = address.get_future();
    thread_ = std::thread([this, options, &address] {
      auto io = kj::setupAsyncIo();
      auto identity = Identity::generate();
      auto server = NodeServer::create(options, *identity);
      if (!server) {
        address.set_value("error: " + server.error().message);
        return;
      }
      peer_id_ = (*server)->peer_id();
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      stop_ = kj::mv(paf.fulfiller);
      auto r = (*server)->serve(io, "127.0.0.1:0", [&](const std::string& a) { address.set_value(a); },
                                kj::mv(paf.promise));
      (void)r;
    });
    address_ = ready.get();
  }
  ~TestNode() {
    if (stop_) stop_->fulfill();
    thread_.join();
  }
  PeerAddress address() const {
    auto a = parse_peer_address(peer_id_ + "@" + address_);
    EXPECT_TRUE(a.ok()) << address_;
    return *a;
  }

 private:
  std::thread thread_;
  std::string address_, peer_id_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
};

inline NodeOptions options(uint32_t begin, uint32_t end) {
  NodeOptions o;
  o.model_path = kModel;
  o.block_begin = begin;
  o.block_end = end;
  o.threads = 1;
  return o;
}

struct Client {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::shared_ptr<TlsContext> tls = *TlsContext::create(*Identity::generate());

  kj::Own<NodeConnection> connect(const PeerAddress& a) {
    return NodeConnection::connect(*io.provider, *tls, a, {}, 5 * kj::SECONDS).wait(io.waitScope);
  }
  // The error of a call that must fail, as the client decodes it; an empty Internal one if it succeeded.
  template <class F>
  Error failure_of(F&& f) {
    Error out{ErrorCode::Internal, ""};
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { f(); })) { out = to_error(*e); }
    return out;
  }
  // Its text only.
  template <class F>
  std::string error_of(F&& f) {
    return failure_of(std::forward<F>(f)).message;
  }
};

inline proto::Session::Client open(Client& c, NodeConnection& n, uint32_t a, uint32_t b, uint32_t length = 64,
                                   proto::HiddenFormat f = proto::HiddenFormat::F32) {
  auto req = n.node().openSessionRequest();
  auto p = req.initParams();
  p.setBlockBegin(a);
  p.setBlockEnd(b);
  p.setMaxLength(length);
  p.setHiddenFormat(f);
  return req.send().wait(c.io.waitScope).getSession();
}

}  // namespace omni::net
