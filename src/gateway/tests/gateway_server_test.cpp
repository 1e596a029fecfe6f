// The gateway over HTTP (127.0.0.1, a free port) with a backend whose steps fail with a chosen
// Error: the status follows the code, and an internal error's text stays in the server's log.
// And the listener's defences: one server per port, a real backlog, capped request heads, 405;
// and the web UI's files (static_site.h).
#include "gateway/gateway_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/head_limits.h"
#include "gateway/local_engine_backend.h"
#include "gateway/static_site.h"

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

// The test model's local backend (one thread); a test failure and null when it cannot load.
std::unique_ptr<LocalEngineBackend> load_backend(uint32_t n_ctx = 0) {
  LocalBackendOptions o;
  o.model_path = kModel;
  o.model_id = "test-model";
  o.threads = 1;
  o.n_ctx = n_ctx;
  auto local = LocalEngineBackend::load(o);
  if (!local) {
    ADD_FAILURE() << local.error().message;
    return nullptr;
  }
  return std::move(*local);
}

struct Served {
  std::unique_ptr<GatewayServer> server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::vector<std::string> log;

  explicit Served(Error failure, std::string web_dir = {},
                  const std::function<void(GatewayOptions&)>& configure = {}, uint32_t n_ctx = 0) {
    auto local = load_backend(n_ctx);
    if (!local) return;
    GatewayOptions g;
    g.web_dir = std::move(web_dir);
    g.host = "127.0.0.1";
    g.port = 0;
    if (configure) configure(g);
    g.log = [this](const std::string& line) {
      std::lock_guard lock(mu);
      log.push_back(line);
    };
    auto s = GatewayServer::create(std::make_unique<FailingBackend>(std::move(local), std::move(failure)), g);
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

TEST(GatewayServer, ModelsCarryTheContextLength) {
  Served s(Error{ErrorCode::Internal, "unused"}, {}, {}, /*n_ctx=*/1536);
  ASSERT_TRUE(s.server);
  httplib::Client client("127.0.0.1", s.port);
  auto list = client.Get("/v1/models");
  ASSERT_TRUE(list);
  const auto models = nlohmann::json::parse(list->body);
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "test-model");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["context_length"], 1536);
  auto one = client.Get("/v1/models/test-model");
  ASSERT_TRUE(one);
  EXPECT_EQ(nlohmann::json::parse(one->body)["context_length"], 1536);
}

// A gateway on 127.0.0.1:port (0: any), bound but not serving.
std::unique_ptr<GatewayServer> unserved_gateway(int port, Result<int>& bound) {
  auto local = load_backend();
  if (!local) return nullptr;
  GatewayOptions g;
  g.host = "127.0.0.1";
  g.port = port;
  auto s = GatewayServer::create(std::move(local), g);
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return nullptr;
  }
  bound = (*s)->bind();
  return std::move(*s);
}

int connect_nonblocking(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  return fd;
}

// Sends `request` on a fresh connection and returns all the server sends back until it closes
// (or 5 s pass). Send errors are ignored: a server may close on a flood before taking all of it.
std::string raw_exchange(int port, const std::string& request) {
  const int fd = connect_nonblocking(port);
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, 2000) != 1) {
    ::close(fd);
    return "<no connection>";
  }
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return reply;
}

std::string request_with_headers(size_t count, size_t value_bytes) {
  std::string r = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (size_t i = 2; i < count; ++i) r += "X-Filler-" + std::to_string(i) + ": " + std::string(value_bytes, 'v') + "\r\n";
  return r + "\r\n";
}

TEST(GatewayListener, ASecondGatewayOnThePortIsRefused) {
  Result<int> first_port = 0;
  auto first = unserved_gateway(0, first_port);
  ASSERT_TRUE(first && first_port) << (first_port ? "" : first_port.error().message);
  Result<int> second_port = 0;
  auto second = unserved_gateway(*first_port, second_port);
  ASSERT_TRUE(second);
  ASSERT_FALSE(second_port) << "a second server bound 127.0.0.1:" << *first_port << " (SO_REUSEPORT)";
  EXPECT_TRUE(second_port.error().is(ErrorCode::AlreadyExists)) << second_port.error().message;
  EXPECT_NE(second_port.error().message.find("127.0.0.1:" + std::to_string(*first_port)), std::string::npos)
      << second_port.error().message;
}

// Nothing accepts (bound, not serving), so every connection that completes its handshake waits in
// the accept queue: with httplib's backlog of 5 only about 6 do, the rest hang in SYN_SENT.
TEST(GatewayListener, TheBacklogHoldsABurstOfConnects) {
  Result<int> port = 0;
  auto server = unserved_gateway(0, port);
  ASSERT_TRUE(server && port);
  constexpr int kBurst = 64;
  std::vector<pollfd> fds;
  for (int i = 0; i < kBurst; ++i) fds.push_back(pollfd{connect_nonblocking(*port), POLLOUT, 0});
  int connected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (connected < kBurst && std::chrono::steady_clock::now() < deadline) {
    (void)::poll(fds.data(), fds.size(), 50);
    connected = 0;
    for (auto& p : fds) {
      int err = -1;
      socklen_t len = sizeof err;
      if ((p.revents & POLLOUT) && ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) ++connected;
    }
  }
  for (auto& p : fds) ::close(p.fd);
  EXPECT_EQ(connected, kBurst);
}

TEST(GatewayListener, RequestHeadsOverTheCapAre431) {
  Served s(Error{ErrorCode::Internal, "unused"});
  ASSERT_TRUE(s.server);
  const HeadLimits limits;  // the defaults the server runs with
  EXPECT_EQ(raw_exchange(s.port, request_with_headers(limits.max_header_lines, 4)).rfind("HTTP/1.1 200", 0), 0u);
  // One header line too many; one header too long; a flood of a million bytes of headers.
  for (const std::string& request : {request_with_headers(limits.max_header_lines + 1, 4),
                                     request_with_headers(3, limits.max_head_bytes),
                                     request_with_headers(100000, 10)}) {
    const auto started = std::chrono::steady_clock::now();
    const std::string reply = raw_exchange(s.port, request);
    EXPECT_EQ(reply.rfind("HTTP/1.1 431", 0), 0u) << reply.substr(0, 200);
    EXPECT_NE(reply.find("request_header_fields_too_large"), std::string::npos) << reply.substr(0, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
  }
  // The server still serves.
  httplib::Client client("127.0.0.1", s.port);
  auto ok = client.Get("/health");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// A kept-alive connection waits for its next request under the idle deadline, not under the first
// request's head deadline: a client that reuses it after the head deadline gets its answer, never an
// unsolicited 408 (which a client reads as the reply to its next request).
TEST(GatewayListener, AKeptAliveConnectionOutlivesTheHeadDeadline) {
  Served s(Error{ErrorCode::Internal, "unused"}, {}, [](GatewayOptions& g) {
    g.connection_limits.head_timeout = std::chrono::milliseconds(300);
    g.connection_limits.idle_timeout = std::chrono::milliseconds(3000);
  });
  ASSERT_TRUE(s.server);
  const int fd = connect_nonblocking(s.port);
  pollfd p{fd, POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  // Reads one response (head plus Content-Length body) from the kept-alive connection.
  auto exchange = [&]() -> std::string {
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
      return "<send failed>";
    std::string reply;
    char buf[4096];
    for (;;) {
      const size_t head_end = reply.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const size_t at = reply.find("Content-Length: ");
        const size_t length = at == std::string::npos ? 0 : std::stoul(reply.substr(at + 16));
        if (reply.size() >= head_end + 4 + length) return reply;
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return reply.empty() ? "<closed>" : reply;
      reply.append(buf, static_cast<size_t>(n));
    }
  };
  for (int round = 0; round < 3; ++round) {
    const std::string reply = exchange();
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << "round " << round << ": " << reply.substr(0, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(700));  // past the head deadline, within idle
  }
  // Past the idle deadline the server closes the connection without sending anything.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  char byte;
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);
  ::close(fd);
}

// A request refused by the access policy is answered as soon as its head is in: the gateway does
// not read (and hold) the body of a client without a key or from a refused origin.
TEST(GatewayListener, AnAccessRefusalComesBeforeTheBody) {
  Served s(Error{ErrorCode::Internal, "unused"}, {}, [](GatewayOptions& g) { g.access.api_keys = {"key-1"}; });
  ASSERT_TRUE(s.server);
  // Sends only the head of a 100 kB POST and returns what arrives within `wait`.
  auto head_only = [&](const std::string& extra_headers, std::chrono::milliseconds wait) {
    const int fd = connect_nonblocking(s.port);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 2000) != 1) {
      ::close(fd);
      return std::string("<no connection>");
    }
    const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                             extra_headers + "Content-Length: 100000\r\n\r\n";
    (void)::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    std::string reply;
    char buf[4096];
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      pollfd in{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&in, 1, static_cast<int>(left.count())) != 1) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return reply;
  };
  const std::string no_key = head_only("", std::chrono::milliseconds(3000));
  EXPECT_EQ(no_key.rfind("HTTP/1.1 401", 0), 0u) << no_key.substr(0, 300);
  EXPECT_NE(no_key.find("WWW-Authenticate: Bearer"), std::string::npos) << no_key.substr(0, 300);
  EXPECT_NE(no_key.find("invalid_api_key"), std::string::npos) << no_key.substr(0, 300);
  const std::string wrong_key = head_only("Authorization: Bearer key-2\r\n", std::chrono::milliseconds(3000));
  EXPECT_EQ(wrong_key.rfind("HTTP/1.1 401", 0), 0u) << wrong_key.substr(0, 300);
  const std::string foreign = head_only("Authorization: Bearer key-1\r\nOrigin: http://evil.example\r\n",
                                        std::chrono::milliseconds(3000));
  EXPECT_EQ(foreign.rfind("HTTP/1.1 403", 0), 0u) << foreign.substr(0, 300);
  EXPECT_NE(foreign.find("origin_not_allowed"), std::string::npos) << foreign.substr(0, 300);
  // With the key the gateway waits for the body: nothing comes back while it has not arrived.
  EXPECT_EQ(head_only("authorization: Bearer key-1\r\n", std::chrono::milliseconds(500)), "");
}

TEST(GatewayListener, AKnownPathWithTheWrongMethodIs405WithAllow) {
  Served s(Error{ErrorCode::Internal, "unused"});
  ASSERT_TRUE(s.server);
  httplib::Client client("127.0.0.1", s.port);
  struct Case {
    std::string method, path, allow;
  };
  for (const Case& c : {Case{"GET", "/v1/chat/completions", "POST"}, Case{"GET", "/v1/completions", "POST"},
                        Case{"POST", "/v1/models", "GET, HEAD"}, Case{"DELETE", "/v1/models/test-model", "GET, HEAD"},
                        Case{"POST", "/health", "GET, HEAD"}, Case{"PUT", "/metrics", "GET, HEAD"},
                        Case{"POST", "/v1/swarm", "GET, HEAD"}}) {
    httplib::Result r = c.method == "GET"      ? client.Get(c.path)
                        : c.method == "POST"   ? client.Post(c.path, "{}", "application/json")
                        : c.method == "PUT"    ? client.Put(c.path, "{}", "application/json")
                                               : client.Delete(c.path);
    ASSERT_TRUE(r) << c.method << " " << c.path;
    EXPECT_EQ(r->status, 405) << c.method << " " << c.path;
    EXPECT_EQ(r->get_header_value("Allow"), c.allow) << c.method << " " << c.path;
    EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["code"], "method_not_allowed") << r->body;
  }
  // Paths that are no route stay 404, whatever the method.
  for (const std::string path : {"/v1/nothing", "/v1/models/", "/nothing"}) {
    auto r = client.Post(path, "{}", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
  }
}

// The web UI's files come from memory: precompressed for clients that take gzip, with an ETag
// that answers 304, and with caching by kind (hashed assets for a year, the page revalidated).
TEST(GatewayServer, WebFilesAreServedPrecompressedWithValidators) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("omni-web-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "assets");
  std::string script;
  for (int i = 0; i < 2000; ++i) script += "console.log('line " + std::to_string(i % 37) + "');\n";
  {
    std::ofstream(dir / "index.html") << "<!doctype html><title>t</title><script src=/assets/app.js></script>";
    std::ofstream(dir / "assets" / "app.js") << script;
  }
  Served s(Error{ErrorCode::Internal, "unused"}, dir.string());
  ASSERT_TRUE(s.server);
  httplib::Client client("127.0.0.1", s.port);
  client.set_decompress(false);

  auto plain = client.Get("/assets/app.js");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200);
  EXPECT_EQ(plain->body, script);
  EXPECT_FALSE(plain->has_header("Content-Encoding"));
  EXPECT_EQ(plain->get_header_value("Cache-Control"), "public, max-age=31536000, immutable");
  const std::string etag = plain->get_header_value("ETag");
  ASSERT_FALSE(etag.empty());

  auto zipped = client.Get("/assets/app.js", httplib::Headers{{"Accept-Encoding", "br, gzip;q=0.8"}});
  ASSERT_TRUE(zipped);
  EXPECT_EQ(zipped->status, 200);
  EXPECT_EQ(zipped->get_header_value("Content-Encoding"), "gzip");
  EXPECT_LT(zipped->body.size(), script.size() / 4);
  std::string inflated(script.size() + 1, '\0');
  uLongf inflated_size = inflated.size();
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(zipped->body.data());
  z.avail_in = static_cast<uInt>(zipped->body.size());
  z.next_out = reinterpret_cast<Bytef*>(inflated.data());
  z.avail_out = static_cast<uInt>(inflated_size);
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  inflated.resize(z.total_out);
  inflateEnd(&z);
  EXPECT_EQ(inflated, script);

  auto refused = client.Get("/assets/app.js", httplib::Headers{{"Accept-Encoding", "gzip;q=0"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->body, script);

  auto again = client.Get("/assets/app.js", httplib::Headers{{"If-None-Match", etag}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());

  auto page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<title>t</title>"), std::string::npos);
  EXPECT_EQ(page->get_header_value("Cache-Control"), "no-cache");
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");

  auto missing = client.Get("/assets/none.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  std::filesystem::remove_all(dir);
}

// Only regular files inside the root are loaded, within the byte budget.
TEST(StaticSite, SkipsLinksAndRefusesAnOversizedTree) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("omni-site-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "index.html") << std::string(1000, 'x');
  std::filesystem::create_symlink("/etc/hostname", dir / "leak.txt");
  auto site = StaticSite::load(dir.string());
  ASSERT_TRUE(site) << site.error().message;
  EXPECT_NE(site->find("/"), nullptr);
  EXPECT_EQ(site->find("/leak.txt"), nullptr);
  EXPECT_EQ(site->file_count(), 1u);
  auto small = StaticSite::load(dir.string(), 999);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().code, ErrorCode::ResourceExhausted);
  std::filesystem::remove(dir / "index.html");
  auto none = StaticSite::load(dir.string());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);
  std::filesystem::remove_all(dir);
}

TEST(StaticSite, AcceptsGzipFollowsQValues) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("deflate, gzip;q=0.5"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_TRUE(accepts_gzip(" GZIP ; q=1"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("br, deflate"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0.000"));
  EXPECT_FALSE(accepts_gzip("gzipx"));
}

}  // namespace
}  // namespace omni::gateway

namespace omni::gateway {
namespace {

// Two models: one served (with a CID), one the swarm covers with a gap.
class GapCatalog final : public ModelCatalog {
 public:
  explicit GapCatalog(std::unique_ptr<EngineBackend> backend) : backend_(std::move(backend)) {}
  std::vector<CatalogEntry> models() const override { return {{"test-model", "bafkreitestcid", backend_->description().n_ctx}};
  }
  Result<EngineBackend*> backend(const std::string& id) override {
    if (id == "test-model" || id == "bafkreitestcid") return backend_.get();
    if (id == "gappy") return Error{ErrorCode::Unavailable, "no live node serves " + describe_blocks({3, 4, 5, 9})};
    return Error{ErrorCode::NotFound, "the model '" + id + "' does not exist"};
  }
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override { return backend_->swarm_snapshot(load); }

 private:
  std::unique_ptr<EngineBackend> backend_;
};

TEST(SwarmView, DescribeBlocksNamesRuns) {
  EXPECT_EQ(describe_blocks({2}), "block 2");
  EXPECT_EQ(describe_blocks({3, 4, 5, 9}), "blocks 3-5 and 9");
  EXPECT_EQ(describe_blocks({0, 2, 4, 5}), "blocks 0, 2 and 4-5");
  SwarmModel m;
  m.coverage = {1, 0, 2, 0};
  EXPECT_EQ(m.missing(), (std::vector<uint32_t>{1, 3}));
}

TEST(GatewayServer, AModelWithAGapIsA503NamingItsBlocks) {
  auto local = load_backend();
  ASSERT_TRUE(local);
  GatewayOptions g;
  g.host = "127.0.0.1";
  g.port = 0;
  auto s = GatewayServer::create(std::make_unique<GapCatalog>(std::move(local)), g);
  ASSERT_TRUE(s) << s.error().message;
  auto port = (*s)->bind();
  ASSERT_TRUE(port);
  std::thread serving([&] { (void)(*s)->serve(); });
  httplib::Client client("127.0.0.1", *port);
  client.set_read_timeout(30, 0);
  auto post = [&](const std::string& model) {
    nlohmann::json body = {{"model", model}, {"prompt", "hello"}, {"max_tokens", 2}};
    return client.Post("/v1/completions", body.dump(), "application/json");
  };
  auto gap = post("gappy");
  ASSERT_TRUE(gap);
  EXPECT_EQ(gap->status, 503);
  EXPECT_NE(gap->body.find("blocks 3-5 and 9"), std::string::npos) << gap->body;
  EXPECT_EQ(nlohmann::json::parse(gap->body)["error"]["code"], "model_unavailable");
  EXPECT_TRUE(gap->has_header("Retry-After"));
  auto unknown = post("nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto by_cid = post("bafkreitestcid");
  ASSERT_TRUE(by_cid);
  EXPECT_EQ(by_cid->status, 200) << by_cid->body;
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  const auto list = nlohmann::json::parse(models->body);
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["cid"], "bafkreitestcid");
  (*s)->stop();
  serving.join();
}

// The per-request defences hold for a catalog's models as for the single one: the access policy,
// the prompt's budget (a prompt far beyond the context is refused by its size), context_length.
TEST(GatewayServer, ACatalogsModelsGetTheSameDefences) {
  auto local = load_backend();
  ASSERT_TRUE(local);
  const uint32_t n_ctx = local->description().n_ctx;
  GatewayOptions g;
  g.host = "127.0.0.1";
  g.port = 0;
  g.access.api_keys = {"sk-catalog-test"};
  auto s = GatewayServer::create(std::make_unique<GapCatalog>(std::move(local)), g);
  ASSERT_TRUE(s) << s.error().message;
  auto port = (*s)->bind();
  ASSERT_TRUE(port);
  std::thread serving([&] { (void)(*s)->serve(); });
  httplib::Client client("127.0.0.1", *port);
  client.set_read_timeout(30, 0);
  const std::string huge(size_t{n_ctx} * 64, 'a');
  nlohmann::json body = {{"model", "bafkreitestcid"}, {"prompt", huge}, {"max_tokens", 2}};
  auto anonymous = client.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401) << anonymous->body;
  client.set_bearer_token_auth("sk-catalog-test");
  auto too_long = client.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(too_long);
  EXPECT_EQ(too_long->status, 400) << too_long->body;
  EXPECT_EQ(nlohmann::json::parse(too_long->body)["error"]["code"], "context_length_exceeded");
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200) << models->body;
  const auto list = nlohmann::json::parse(models->body);
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["context_length"], n_ctx);
  EXPECT_EQ(list["data"][0]["cid"], "bafkreitestcid");
  (*s)->stop();
  serving.join();
}

}  // namespace
}  // namespace omni::gateway
