// The gateway over HTTP (127.0.0.1, a free port) with a backend whose steps fail with a chosen
// Error: the status follows the code, and an internal error's text stays in the server's log.
#include "gateway/gateway_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/local_engine_backend.h"

namespace omni::gateway {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

// The local backend, except that every step fails with `failure`.
class FailingBackend final : public EngineBackend {
 public:
  FailingBackend(std::unique_ptr<LocalEngineBackend> inner, Error failure)
      : inner_(std::move(inner)), failure_(std::move(failure)) {}
  const ModelDescription& description() const override { return inner_->description(); }
  const model::Tokenizer& tokenizer() const override { return inner_->tokenizer(); }
  size_t max_batch() const override { return inner_->max_batch(); }
  Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) override {
    return inner_->open_sequence(n_ctx);
  }
  void run_steps(std::span<EngineStep> steps) override {
    for (auto& s : steps) s.result = failure_;
  }
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override { return inner_->swarm_snapshot(load); }

 private:
  std::unique_ptr<LocalEngineBackend> inner_;
  Error failure_;
};

struct Served {
  std::unique_ptr<GatewayServer> server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::vector<std::string> log;

  explicit Served(Error failure) {
    LocalBackendOptions o;
    o.model_path = kModel;
    o.model_id = "test-model";
    o.threads = 1;
    auto local = LocalEngineBackend::load(o);
    if (!local) {
      ADD_FAILURE() << local.error().message;
      return;
    }
    GatewayOptions g;
    g.host = "127.0.0.1";
    g.port = 0;
    g.log = [this](const std::string& line) {
      std::lock_guard lock(mu);
      log.push_back(line);
    };
    auto s = GatewayServer::create(std::make_unique<FailingBackend>(std::move(*local), std::move(failure)), g);
    if (!s) {
      ADD_FAILURE() << s.error().message;
      return;
    }
    server = std::move(*s);
    auto p = server->bind();
    if (!p) {
      ADD_FAILURE() << p.error().message;
      return;
    }
    port = *p;
    thread = std::thread([this] { (void)server->serve(); });
  }
  ~Served() {
    if (server) server->stop();
    if (thread.joinable()) thread.join();
  }
  bool logged(const std::string& part) {
    std::lock_guard lock(mu);
    for (const auto& l : log)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }
  httplib::Result complete(bool stream) {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(30, 0);
    nlohmann::json body = {{"model", server_model()}, {"prompt", "hello"}, {"max_tokens", 2}, {"stream", stream}};
    return client.Post("/v1/completions", body.dump(), "application/json");
  }
  std::string server_model() const { return "test-model"; }
};

TEST(GatewayServer, AnInternalErrorIsA500WithoutItsText) {
  const std::string secret = "assertion failed in matmul at /build/src/kernels/matmul.cpp:123";
  Served s(Error{ErrorCode::Internal, secret});
  ASSERT_TRUE(s.server);
  auto r = s.complete(false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body.find(secret), std::string::npos) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["type"], "server_error");
  EXPECT_TRUE(s.logged(secret));  // the operator still learns what happened
  // Streamed: the status is committed before the failure; the error event hides the text too.
  auto streamed = s.complete(true);
  ASSERT_TRUE(streamed);
  EXPECT_NE(streamed->body.find("\"error\""), std::string::npos) << streamed->body;
  EXPECT_EQ(streamed->body.find(secret), std::string::npos) << streamed->body;
}

TEST(GatewayServer, StatusFollowsTheCode) {
  struct Case {
    ErrorCode code;
    int status;
    bool text_shown;
  };
  for (const Case& c : {Case{ErrorCode::Unavailable, 503, false}, Case{ErrorCode::DeadlineExceeded, 504, false},
                        Case{ErrorCode::ResourceExhausted, 503, false}, Case{ErrorCode::InvalidArgument, 400, true},
                        Case{ErrorCode::Corruption, 500, false}}) {
    const std::string text = std::string("node 127.0.0.1:7001 says ") + to_string(c.code);
    Served s(Error{c.code, text});
    ASSERT_TRUE(s.server);
    auto r = s.complete(false);
    ASSERT_TRUE(r) << to_string(c.code);
    EXPECT_EQ(r->status, c.status) << to_string(c.code);
    EXPECT_EQ(r->body.find(text) != std::string::npos, c.text_shown) << to_string(c.code) << ": " << r->body;
  }
}

}  // namespace
}  // namespace omni::gateway
