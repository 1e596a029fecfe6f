// GatewayServer: the HTTP front of the gateway.
//
//   GET  /v1/models, /v1/models/{id}    the models this gateway serves (with their CIDs when known)
//   POST /v1/chat/completions            OpenAI chat completions (stream: true → server-sent events)
//   POST /v1/completions                 OpenAI text completions (likewise)
//   GET  /v1/swarm                       nodes, block coverage, throughput history (the dashboard)
//   GET  /health, /metrics               liveness (JSON) and Prometheus metrics
//   GET  /…                              the web UI from web_dir (web/dist), when there is one
//
// Every request first passes the AccessPolicy (access_policy.h): 403 for a Host or Origin not
// allowed, 401 without a valid API key where keys are configured, CORS answers for allowed origins.
// Errors use OpenAI's error object with its status codes: 400 malformed JSON or fields, 404
// unknown model or route, 405 a route's path with another method (with Allow), 413 a body over
// max_body_bytes (chunked ones too, as soon as the decoded size passes it), 431 a request head over
// head_limits, 400/501/505 ambiguous or unsupported framing (RFC 9112), 408 a request slower than
// connection_limits' deadlines, 503 a connection over its caps (those close the connection), 429
// rate limited, 503 queue full (both with Retry-After), 503 a model the swarm does not fully serve
// now (naming the missing blocks) or still loads, 500 an engine failure. A client that disconnects from a stream (or from a
// long non-streamed request, which is kept alive with JSON whitespace) cancels its generation;
// the scheduler frees its session at the next round.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "gateway/access_policy.h"
#include "gateway/contribution_ledger.h"
#include "gateway/fair_use.h"
#include "gateway/connection_limits.h"
#include "gateway/engine_backend.h"
#include "gateway/head_limits.h"
#include "gateway/model_catalog.h"
#include "gateway/rate_limiter.h"
#include "gateway/scheduler.h"

namespace omni::gateway {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (see bind())
  size_t max_body_bytes = 4 << 20;
  std::string web_dir;                   // static files served at /; empty: none
  std::string chat_template;             // a template by name instead of the model's
  std::string chat_template_source;      // Jinja source to use instead of every model's own (when set)
  RateLimits rate_limits;
  SchedulerOptions scheduler;
  int write_timeout_s = 30;
  HeadLimits head_limits;                // a request head over these is refused with 431
  ConnectionLimits connection_limits;    // connection caps (503) and request deadlines (408)
  AccessOptions access;                  // API keys, Host and Origin allow-lists (default for `host`)
  // Fair use (fair_use.h): requests presenting a node key are classed by the node's contribution
  // in `contributions` (null: every node key is the free tier).
  FairUseOptions fair_use;
  std::shared_ptr<ContributionLedger> contributions;
  // Where the detail of failures that clients only see as a generic message goes (internal errors,
  // unreachable nodes); unset: standard error.
  std::function<void(const std::string&)> log;
};

class GatewayServer {
 public:
  // Each model gets its own scheduler (options.scheduler) when it is first served; the access
  // policy, rate limits and prompt bounds apply to every model alike. Errors: the chat template of a
  // model served from the start; InvalidArgument, options.access holds a key, host or origin that is
  // not one.
  static Result<std::unique_ptr<GatewayServer>> create(std::unique_ptr<ModelCatalog> catalog,
                                                       const GatewayOptions& options);
  // One model, always served.
  static Result<std::unique_ptr<GatewayServer>> create(std::unique_ptr<EngineBackend> backend,
                                                       const GatewayOptions& options);
  ~GatewayServer();

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  // AlreadyExists when the address is in use: a second gateway never shares a port.
  Result<int> bind();
  // Serves until stop(); Error if the server could not run.
  Result<void> serve();
  // Stops serving (any thread). Generations in flight are finished with an error.
  void stop();
  // The Host allow-list in force (AccessPolicy::allowed_hosts()); empty: any host.
  const std::vector<std::string>& allowed_hosts() const;

 private:
  struct Impl;
  explicit GatewayServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni::gateway
