#include "gateway/gateway_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>

#include "gateway/api_error.h"
#include "gateway/http_listener.h"
#include "gateway/metrics.h"
#include "gateway/ollama_api.h"
#include "gateway/openai_request.h"
#include "gateway/openai_response.h"
#include "gateway/output_constraints.h"
#include "gateway/tool_calls.h"
#include "gateway/prompt_builder.h"
#include "gateway/sse.h"
#include "gateway/static_site.h"
#include "gateway/swarm_view.h"

namespace omni::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr auto kStreamPoll = std::chrono::milliseconds(1000);     // idle stream: keep-alive comment
// The Ollama API version /api/version reports: the one whose fields ollama_api.h follows.
constexpr const char* kOllamaApiVersion = "0.6.4";
constexpr auto kPlainWaitBeforeKeepAlive = std::chrono::seconds(2);  // non-streamed: wait this long first

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Metric label for a path: the routes by name, everything else in two buckets, so a scan of
// random paths cannot grow the label set.
std::string route_label(const httplib::Request& req) {
  static const char* kRoutes[] = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/swarm", "/health",
                                  "/metrics", "/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/version"};
  for (const char* r : kRoutes)
    if (req.path == r) return r;
  if (req.path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  if (req.path.rfind("/v1/", 0) == 0) return "/v1/other";
  if (req.path.rfind("/api/", 0) == 0) return "/api/other";
  return "static";
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  send_json(res, e.status, e.to_json());
}

// The access policy's answer to a request head (RequestFramer::head()) whose body has not been
// read: a complete HTTP response closing the connection for a refusal, nothing to go on.
std::optional<std::string> refusal_before_body(const AccessPolicy& access, std::string_view head) {
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 <= sp1) return std::nullopt;  // the framer checked it
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  // Header names are case-insensitive; the framer left one "Name: value" per line.
  auto header = [head, line_end](std::string_view name) -> std::optional<std::string_view> {
    for (size_t at = line_end + 2; at < head.size();) {
      const size_t end = std::min(head.find("\r\n", at), head.size());
      const std::string_view field = head.substr(at, end - at);
      const size_t colon = field.find(':');
      if (colon == name.size() &&
          std::equal(name.begin(), name.end(), field.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return field.substr(std::min(field.size(), colon + 2));
      at = end + 2;
    }
    return std::nullopt;
  };
  const AccessDecision decision = access.decide(
      AccessRequest{method, target, header("Host"), header("Origin"), header("Authorization"),
                    header("Access-Control-Request-Method")});
  if (!decision.refusal) return std::nullopt;
  return closing_http_response(*decision.refusal, decision.headers);
}

// The methods a known path answers ("GET, HEAD"), for a 405's Allow header; empty for a path that
// is no route, which stays a 404.
std::string allowed_methods(const std::string& path) {
  static const char* kPostRoutes[] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/chat",
                                      "/api/generate", "/api/show"};
  static const char* kGetRoutes[] = {"/v1/models", "/v1/swarm", "/health", "/metrics", "/", "/api/tags",
                                     "/api/version"};
  for (const char* r : kPostRoutes)
    if (path == r) return "POST";
  for (const char* r : kGetRoutes)
    if (path == r) return "GET, HEAD";
  if (path.rfind("/v1/models/", 0) == 0 && path.size() > std::strlen("/v1/models/")) return "GET, HEAD";
  return "";
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

struct GatewayServer::Impl {
  // A model being served: its prompts and its scheduler (created on its first request).
  struct Served {
    EngineBackend* backend;
    PromptBuilder prompts;
    std::unique_ptr<Scheduler> scheduler;
    std::unique_ptr<OutputConstraints> constraints;  // the grammars its requests ask for
    ToolCallFormat tool_format = ToolCallFormat::Generic;  // how its template writes tool calls
  };
  // The tools a generation's answer may call (null: its text is all content).
  using Tools = std::shared_ptr<const std::vector<ToolDefinition>>;

  std::unique_ptr<ModelCatalog> catalog;
  GatewayOptions options;
  AccessPolicy access;  // before routing, for every model
  Metrics metrics;
  ThroughputHistory throughput;
  RateLimiter limiter;
  SchedulerObserver observer;
  mutable std::mutex served_mutex;
  std::map<EngineBackend*, std::unique_ptr<Served>> served;  // declared after catalog: goes first
  HttpListener http;
  std::optional<StaticSite> site;  // the web UI, when built
  int64_t started_unix = 0;
  bool bound = false;

  Impl(std::unique_ptr<ModelCatalog> c, const GatewayOptions& o, AccessPolicy a, std::optional<StaticSite> s)
      : catalog(std::move(c)), options(o), access(std::move(a)), limiter(o.rate_limits),
        http(o.head_limits, o.connection_limits), site(std::move(s)) {
    observer.on_first_token = [this](const GenerationJob& job) {
      metrics.observe_time_to_first_token(seconds_since(job.arrived()));
    };
    observer.on_tokens = [this](const GenerationJob&, size_t n) {
      metrics.add_generated_tokens(n);
      throughput.record(n);
    };
    observer.on_prompt = [this](const GenerationJob&, size_t n) { metrics.add_prompt_tokens(n); };
    observer.on_cancelled = [this](const GenerationJob&) { metrics.count_cancelled(); };
    started_unix = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    setup_routes();
  }

  // The model `id` ready to take requests. Errors: the catalog's, and the chat template's
  // (PromptBuilder::create).
  Result<Served*> serve_model(const std::string& id) {
    auto backend = catalog->backend(id);
    if (!backend) return backend.error();
    std::lock_guard lock(served_mutex);
    auto& slot = served[*backend];
    if (!slot) {
      const std::string& source = options.chat_template_source.empty()
                                      ? (*backend)->description().chat_template_source
                                      : options.chat_template_source;
      auto prompts = PromptBuilder::create((*backend)->tokenizer(), source, options.chat_template);
      if (!prompts) {
        served.erase(*backend);
        return prompts.error().with_context("chat template");
      }
      slot = std::unique_ptr<Served>(new Served{*backend, std::move(*prompts), nullptr,
                                                std::make_unique<OutputConstraints>((*backend)->tokenizer()),
                                                tool_call_format(source)});
      slot->scheduler = std::make_unique<Scheduler>(**backend, options.scheduler, observer);
    }
    return slot.get();
  }
  // Sessions running and requests waiting, over every model.
  std::pair<size_t, size_t> load() const {
    std::lock_guard lock(served_mutex);
    size_t active = 0, queued = 0;
    for (const auto& [backend, s] : served) {
      active += s->scheduler->active_sessions();
      queued += s->scheduler->queue_depth();
    }
    return {active, queued};
  }
  LiveGauges gauges() const {
    const auto [active, queued] = load();
    return {throughput.tokens_per_second(), queued, active};
  }

  void setup_routes();
  // Which API a generation request came in through, which decides how it is read and answered.
  enum class Route { OpenAIChat, OpenAICompletion, OllamaChat, OllamaGenerate };
  void handle_generation(const httplib::Request& req, httplib::Response& res, Route route);
  void handle_embeddings(const httplib::Request& req, httplib::Response& res);
  void respond_ollama(httplib::Response& res, std::shared_ptr<GenerationJob> job, OllamaEndpoint endpoint,
                      std::string model, bool stream, Tools tools);
  void respond_streaming(httplib::Response& res, std::shared_ptr<GenerationJob> job, ResponseIdentity who,
                         bool include_usage, Tools tools);
  void respond_whole(httplib::Response& res, std::shared_ptr<GenerationJob> job, ResponseIdentity who, Tools tools);
  // The answers of the OpenAI routes with several choices (n > 1, a batch of prompts; no tools):
  // choice i is jobs[i]; prompt_tokens counts each prompt once.
  void respond_streaming_choices(httplib::Response& res, std::vector<std::shared_ptr<GenerationJob>> jobs,
                                 ResponseIdentity who, size_t prompt_tokens, bool include_usage);
  void respond_whole_choices(httplib::Response& res, std::vector<std::shared_ptr<GenerationJob>> jobs,
                             ResponseIdentity who, size_t prompt_tokens);

  void log(const std::string& line) const {
    if (options.log) options.log(line);
    else std::fprintf(stderr, "omni gateway: %s\n", line.c_str());
  }
  // What the client gets for `error` (api_error()); what it does not get is logged here.
  ApiError failure(const Error& error) const {
    if (!message_reaches_client(error.code)) log(std::string(to_string(error.code)) + ": " + error.message);
    return api_error(error);
  }
  ApiError generation_failure(const JobUpdate& u) const {
    if (u.error) return failure(u.error->with_context("generation failed"));
    return api_error(Error{ErrorCode::Cancelled, "the generation was cancelled"});
  }
};

void GatewayServer::Impl::setup_routes() {
  // One thread per request being answered: generations waiting for tokens hold one each, so the
  // pool covers every session and queue place plus room for the light routes.
  const size_t threads = std::max<size_t>(16, options.scheduler.max_sessions + options.scheduler.max_queue + 16);
  http.set_worker_threads(threads);
  http.set_payload_max_length(options.max_body_bytes);
  http.set_write_timeout(options.write_timeout_s, 0);
  // The access policy sees a request with a body as soon as its head is in, so a client without a
  // valid key (or from a refused origin) cannot make the gateway read and hold megabytes first.
  // The answer is the one the pre-routing hook below would give, with the connection closed.
  http.set_head_screen([this](std::string_view head) { return refusal_before_body(access, head); });

  // httplib 0.11 gzips any text/* or JSON response for a client that accepts gzip, and does so
  // without flushing per chunk, which would hold a stream's tokens back until the end. The API's
  // answers are small and must stream, so the API routes never offer compression. The request is
  // a mutable object inside httplib; only the pre-routing hook sees it before the response is
  // encoded, and it receives it as const.
  // The web UI's files are answered here too, from memory and precompressed (static_site.h), so
  // httplib must not compress them again either. The access policy comes before both, before
  // routing or any work on the body.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    auto header = [&req](const char* name) -> std::optional<std::string> {
      if (!req.has_header(name)) return std::nullopt;
      return req.get_header_value(name);
    };
    const auto host = header("Host"), origin = header("Origin"), authorization = header("Authorization"),
               preflight = header("Access-Control-Request-Method");
    AccessRequest request{req.method, req.path, host, origin, authorization, preflight};
    const AccessDecision decision = access.decide(request);
    for (const auto& h : decision.headers) res.set_header(h.first, h.second);
    if (decision.refusal) {
      send_error(res, *decision.refusal);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (decision.preflight) {
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    auto& headers = const_cast<httplib::Request&>(req).headers;
    if (req.path.rfind("/v1/", 0) == 0 || req.path.rfind("/api/", 0) == 0) headers.erase("Accept-Encoding");
    if (!site || (req.method != "GET" && req.method != "HEAD")) return httplib::Server::HandlerResponse::Unhandled;
    const StaticFile* file = site->find(req.path);
    if (!file) return httplib::Server::HandlerResponse::Unhandled;
    const StaticAnswer answer =
        answer_static(*file, req.get_header_value("If-None-Match"), accepts_gzip(req.get_header_value("Accept-Encoding")));
    headers.erase("Accept-Encoding");
    res.status = answer.status;
    res.set_header("ETag", file->etag);
    res.set_header("Cache-Control", file->cache_control);
    if (!file->gzipped.empty()) res.set_header("Vary", "Accept-Encoding");
    if (answer.body) {
      res.set_content(*answer.body, file->content_type.c_str());
      if (answer.gzipped) res.set_header("Content-Encoding", "gzip");
    }
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.count_request(route_label(req), res.status);
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // a route's own error
    if (res.status == 413) send_error(res, payload_too_large(options.max_body_bytes));
    else if (res.status == 404) {
      if (const std::string allowed = allowed_methods(req.path); !allowed.empty()) {
        res.set_header("Allow", allowed);
        send_error(res, ApiError{405, req.method + " is not allowed on " + req.path + " (allowed: " + allowed + ")",
                                 "invalid_request_error", std::nullopt, "method_not_allowed", 0});
      } else {
        send_error(res, not_found("unknown route: " + req.method + " " + req.path, "unknown_route"));
      }
    }
    else send_error(res, ApiError{res.status, "the request could not be served (HTTP " + std::to_string(res.status) + ")",
                                  res.status >= 500 ? "server_error" : "invalid_request_error", std::nullopt,
                                  std::nullopt, 0});
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log("internal error on " + req.method + " " + req.path + ": " + what);
    send_error(res, server_error("internal error"));
  });

  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, model_list(catalog->models(), started_unix));
  });
  http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    for (const CatalogEntry& m : catalog->models())
      if (req.matches[1] == m.id || (!m.cid.empty() && req.matches[1] == m.cid))
        return send_json(res, 200, model_object(m, started_unix));
    send_error(res, not_found("the model '" + std::string(req.matches[1]) + "' does not exist", "model_not_found"));
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generation(req, res, Route::OpenAIChat);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generation(req, res, Route::OpenAICompletion);
  });
  // Ollama's API (ollama_api.h), for front ends and libraries written for Ollama.
  http.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) {
    handle_embeddings(req, res);
  });
  http.Post("/api/chat", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generation(req, res, Route::OllamaChat);
  });
  http.Post("/api/generate", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generation(req, res, Route::OllamaGenerate);
  });
  http.Get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, ollama_tags(catalog->models()));
  });
  http.Post("/api/show", [this](const httplib::Request& req, httplib::Response& res) {
    auto name = parse_ollama_show(req.body);
    if (!name) return send_json(res, name.error().status, ollama_error(name.error()));
    for (const CatalogEntry& m : catalog->models()) {
      if (*name != m.id && (m.cid.empty() || *name != m.cid)) continue;
      auto served = serve_model(m.id);
      if (!served) {
        const ApiError e = served.error().code == ErrorCode::NotFound ? not_found(served.error().message)
                                                                       : failure(served.error());
        return send_json(res, e.status, ollama_error(e));
      }
      return send_json(res, 200, ollama_show(m, (*served)->backend->description()));
    }
    send_json(res, 404, ollama_error(not_found("model '" + *name + "' not found")));
  });
  http.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"version", kOllamaApiVersion}});
  });
  http.Get("/v1/swarm", [this](const httplib::Request&, httplib::Response& res) {
    GatewayLoad now{throughput.tokens_per_second(), load().first};
    send_json(res, 200, to_json(catalog->swarm_snapshot(now), throughput.history()));
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const auto models = catalog->models();
    std::string chat_template;
    if (!models.empty())
      if (auto first = serve_model(models.front().id)) chat_template = (*first)->prompts.template_name();
    const auto [active, queued] = load();
    send_json(res, 200,
              {{"status", "ok"},
               {"model", models.empty() ? "" : models.front().id},
               {"chat_template", chat_template},
               {"queue_depth", queued},
               {"active_sessions", active},
               {"max_sessions", options.scheduler.max_sessions},
               {"max_queue", options.scheduler.max_queue}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render_prometheus(gauges()), "text/plain; version=0.0.4; charset=utf-8");
  });

  if (!site) {
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("<!doctype html><title>OmniNode gateway</title><p>The OmniNode gateway is running. The web UI "
                      "is not built: run <code>npm ci && npm run build</code> in <code>web/</code> and start the "
                      "gateway with <code>--web-dir web/dist</code>. The API is at <code>/v1</code>.</p>",
                      "text/html; charset=utf-8");
    });
  }
}

void GatewayServer::Impl::handle_embeddings(const httplib::Request& req, httplib::Response& res) {
  // The same gates as a generation: the client's class and rate limits before any work.
  const std::string node_id =
      access.node_of(req.has_header("Authorization") ? std::optional<std::string>(req.get_header_value("Authorization"))
                                                      : std::nullopt);
  const ClientClass klass = classify(req.remote_addr, node_id,
                                     node_id.empty() || !options.contributions ? 0 : options.contributions->work_of(node_id),
                                     options.fair_use);
  const std::string client = klass.rate_key;
  const double scale = klass.limit_scale;
  if (auto d = limiter.admit(client, Clock::now(), scale); !d.allowed)
    return send_error(res, rate_limited(d.reason, d.retry_after_s));
  auto parsed = parse_embedding_request(req.body);
  if (!parsed) return send_error(res, parsed.error());
  auto found = serve_model(parsed->model);
  if (!found) {
    const Error& e = found.error();
    if (e.code == ErrorCode::NotFound) return send_error(res, not_found(e.message, "model_not_found"));
    if (e.code != ErrorCode::Unavailable) return send_error(res, failure(e));
    return send_error(res, ApiError{503, e.message, "server_error", std::nullopt, std::string("model_unavailable"), 5});
  }
  EngineBackend& backend = *(*found)->backend;
  const ModelDescription& desc = backend.description();
  if (!desc.no_embeddings.empty())
    return send_error(res, bad_request(desc.no_embeddings, "model", std::string("embeddings_unavailable")));
  if (parsed->dimensions && static_cast<uint64_t>(*parsed->dimensions) != desc.n_embd)
    return send_error(res, bad_request("this model's embeddings have " + std::to_string(desc.n_embd) +
                                           " dimensions; they cannot be shortened",
                                       "dimensions"));
  const size_t n_vocab = backend.tokenizer().n_vocab();
  std::vector<std::vector<model::TokenId>> inputs;
  size_t tokens = 0;
  for (size_t i = 0; i < parsed->inputs.size(); ++i) {
    const std::string where = parsed->inputs.size() == 1 ? "input" : "input[" + std::to_string(i) + "]";
    std::vector<model::TokenId> ids;
    bool over = false;
    if (const auto* text = std::get_if<std::string>(&parsed->inputs[i])) {
      Prompt p = (*found)->prompts.completion(*text, desc.n_ctx);
      ids = std::move(p.tokens);
      over = p.over_budget;
    } else {
      ids = std::move(std::get<std::vector<int32_t>>(parsed->inputs[i]));
      for (model::TokenId id : ids)
        if (static_cast<size_t>(id) >= n_vocab)
          return send_error(res, bad_request("'" + where + "' holds token " + std::to_string(id) +
                                                 "; this model's vocabulary has " + std::to_string(n_vocab) +
                                                 " tokens",
                                             where));
      over = ids.size() > desc.n_ctx;
    }
    if (over)
      return send_error(res, bad_request("'" + where + "' is longer than this model's context of " +
                                             std::to_string(desc.n_ctx) + " tokens",
                                         where, std::string("context_length_exceeded")));
    if (ids.empty()) return send_error(res, bad_request("'" + where + "' has no tokens", where));
    tokens += ids.size();
    inputs.push_back(std::move(ids));
  }
  // Embedded tokens are taken from the client's token allowance, as generated ones are.
  const auto reservation = limiter.reserve(client, tokens, true, Clock::now(), scale);
  if (!reservation.allowed) {
    ApiError e = rate_limited(reservation.reason, reservation.retry_after_s);
    e.param = "input";
    return send_error(res, e);
  }
  limiter.settle(client, reservation.tokens, reservation.tokens, Clock::now(), scale);
  const auto started = Clock::now();
  std::vector<std::vector<float>> vectors;
  for (const auto& ids : inputs) {
    auto vector = backend.embed(ids);
    if (!vector) return send_error(res, failure(vector.error().with_context("embedding failed")));
    vectors.push_back(std::move(*vector));
  }
  metrics.observe_request_duration(seconds_since(started));
  send_json(res, 200, embeddings_response(desc.id, vectors, parsed->base64, tokens));
}

void GatewayServer::Impl::handle_generation(const httplib::Request& req, httplib::Response& res, Route route) {
  const bool ollama = route == Route::OllamaChat || route == Route::OllamaGenerate;
  auto refuse = [&res, ollama](const ApiError& e) {
    if (!ollama) return send_error(res, e);
    if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
    send_json(res, e.status, ollama_error(e));
  };
  // The client's class (fair use: a contributing node's key) and rate limits come before any work
  // is spent on its body.
  const std::string node_id =
      access.node_of(req.has_header("Authorization") ? std::optional<std::string>(req.get_header_value("Authorization"))
                                                      : std::nullopt);
  const ClientClass klass = classify(req.remote_addr, node_id,
                                     node_id.empty() || !options.contributions ? 0 : options.contributions->work_of(node_id),
                                     options.fair_use);
  const std::string client = klass.rate_key;
  const double scale = klass.limit_scale;
  if (auto d = limiter.admit(client, Clock::now(), scale); !d.allowed)
    return refuse(rate_limited(d.reason, d.retry_after_s));

  GenerationParams params;
  std::string model_name;
  // A chat (messages through the model's template) or text completions (each prompt as it is).
  std::optional<std::vector<model::ChatMessage>> messages;
  std::vector<CompletionPrompt> text_prompts;
  // Tool calling (chat routes only).
  std::vector<ToolDefinition> tools;
  ToolChoice tool_choice;
  nlohmann::ordered_json conversation, tools_json;
  switch (route) {
    case Route::OpenAIChat:
    case Route::OllamaChat: {
      auto parsed = route == Route::OpenAIChat ? parse_chat_request(req.body) : parse_ollama_chat(req.body);
      if (!parsed) return refuse(parsed.error());
      model_name = std::move(parsed->model);
      params = std::move(parsed->params);
      messages = std::move(parsed->messages);
      tools = std::move(parsed->tools);
      tool_choice = parsed->tool_choice;
      conversation = std::move(parsed->conversation);
      tools_json = std::move(parsed->tools_json);
      break;
    }
    case Route::OpenAICompletion: {
      auto parsed = parse_completion_request(req.body);
      if (!parsed) return refuse(parsed.error());
      model_name = std::move(parsed->model);
      params = std::move(parsed->params);
      text_prompts = std::move(parsed->prompts);
      break;
    }
    case Route::OllamaGenerate: {
      auto parsed = parse_ollama_generate(req.body);
      if (!parsed) return refuse(parsed.error());
      model_name = std::move(parsed->model);
      params = std::move(parsed->params);
      if (parsed->raw) {
        text_prompts.emplace_back(std::move(parsed->prompt));
      } else {  // Ollama renders a generate request's prompt as one user turn of the chat template
        messages.emplace();
        if (parsed->system) messages->push_back({"system", std::move(*parsed->system)});
        messages->push_back({"user", std::move(parsed->prompt)});
      }
      break;
    }
  }
  const Endpoint endpoint = messages ? Endpoint::Chat : Endpoint::Completion;

  // A model the catalog cannot serve: 404, or 503 with its reason (a gap in the swarm's coverage).
  auto unserved = [&](const Error& e) {
    if (e.code == ErrorCode::NotFound) return refuse(not_found(e.message, "model_not_found"));
    if (e.code != ErrorCode::Unavailable) return refuse(failure(e));
    refuse(ApiError{503, e.message, "server_error", std::nullopt, std::string("model_unavailable"), 5});
  };
  auto found = serve_model(model_name);
  if (!found) return unserved(found.error());
  Served* model = *found;
  // The prompt must leave room for one generated token; one past that is not tokenized further.
  const ModelDescription& desc = model->backend->description();
  const size_t n_vocab = model->backend->tokenizer().n_vocab();
  const size_t budget = std::max<uint32_t>(desc.n_ctx, 1) - 1;
  std::vector<Prompt> prompts;  // a chat's one, or a completion's batch
  const bool tools_offered = !tools.empty() && tool_choice.kind != ToolChoice::Kind::None;
  if (messages && (tools_offered || !conversation.is_null())) {
    // Tools, tool calls or tool results: the template gets them as transformers passes them.
    model::ChatInput input;
    if (!conversation.is_null()) {
      input.messages = std::move(conversation);
    } else {
      for (const model::ChatMessage& m : *messages) input.messages.push_back({{"role", m.role}, {"content", m.content}});
    }
    if (tools_offered) input.tools = tools_json;
    auto built = model->prompts.chat(input, budget);
    if (!built) {
      ApiError e = failure(built.error().with_context("the conversation does not fit the model's chat template"));
      e.param = "messages";
      return refuse(e);
    }
    prompts.push_back(std::move(*built));
  } else if (messages) {
    auto built = model->prompts.chat(*messages, budget);
    if (!built) {
      ApiError e = failure(built.error().with_context("the conversation does not fit the model's chat template"));
      e.param = "messages";
      return refuse(e);
    }
    prompts.push_back(std::move(*built));
  } else {
    for (size_t i = 0; i < text_prompts.size(); ++i) {
      const std::string where = text_prompts.size() == 1 ? "prompt" : "prompt[" + std::to_string(i) + "]";
      if (const auto* text = std::get_if<std::string>(&text_prompts[i])) {
        prompts.push_back(model->prompts.completion(*text, budget));
        continue;
      }
      Prompt p;
      p.tokens = std::move(std::get<std::vector<int32_t>>(text_prompts[i]));
      for (model::TokenId id : p.tokens)
        if (static_cast<size_t>(id) >= n_vocab)
          return refuse(bad_request("'" + where + "' holds token " + std::to_string(id) +
                                        "; this model's vocabulary has " + std::to_string(n_vocab) + " tokens",
                                    where));
      p.over_budget = p.tokens.size() > budget;
      prompts.push_back(std::move(p));
    }
  }
  size_t room = desc.n_ctx;  // the fewest free positions any prompt leaves
  size_t prompt_tokens = 0;  // usage: each prompt once, however many choices share it
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Prompt& prompt = prompts[i];
    const std::string where =
        endpoint == Endpoint::Chat ? "messages" : prompts.size() == 1 ? "prompt" : "prompt[" + std::to_string(i) + "]";
    if (prompt.over_budget)
      return refuse(bad_request("the prompt is longer than this model's context of " + std::to_string(desc.n_ctx) +
                                    " tokens",
                                where, "context_length_exceeded"));
    if (prompt.tokens.empty()) return refuse(bad_request("the prompt is empty", where));
    if (prompt.tokens.size() >= desc.n_ctx)
      return refuse(bad_request("the prompt has " + std::to_string(prompt.tokens.size()) +
                                    " tokens; this model's context holds " + std::to_string(desc.n_ctx),
                                where, "context_length_exceeded"));
    room = std::min(room, desc.n_ctx - prompt.tokens.size());
    prompt_tokens += prompt.tokens.size();
  }
  const int max_tokens = params.max_tokens ? *params.max_tokens : static_cast<int>(room);
  if (static_cast<size_t>(max_tokens) > room)
    return refuse(bad_request("the prompt (" + std::to_string(desc.n_ctx - room) + " tokens) plus max_tokens (" +
                                  std::to_string(max_tokens) + ") exceed the context of " +
                                  std::to_string(desc.n_ctx) + " tokens",
                              "max_tokens", "context_length_exceeded"));
  const size_t choices = prompts.size() * static_cast<size_t>(params.n);
  if (params.n > 1 && !desc.no_sequence_copies.empty()) return refuse(bad_request(desc.no_sequence_copies, "n"));
  if (choices > 1 && tools_offered)
    return refuse(bad_request("tools are answered one choice at a time: n must be 1 with tools", "n"));
  if (choices > options.scheduler.max_sessions)
    return refuse(bad_request(std::to_string(choices) + " choices asked for; this gateway runs at most " +
                                  std::to_string(options.scheduler.max_sessions) + " generations at once",
                              params.n > 1 ? "n" : "prompt"));
  size_t banned = 0;
  for (const auto& [token, bias] : params.logit_bias) {
    if (static_cast<size_t>(token) >= n_vocab)
      return refuse(bad_request("'logit_bias' names token " + std::to_string(token) + "; this model's vocabulary has " +
                                    std::to_string(n_vocab) + " tokens",
                                "logit_bias." + std::to_string(token)));
    if (bias <= -100.0f) ++banned;
  }
  if (banned > 0 && banned >= n_vocab) return refuse(bad_request("'logit_bias' bans every token", "logit_bias"));
  if (!params.seed_given) params.sampling.seed = std::random_device{}() * 0x100000001ull + std::random_device{}();
  if (auto check = model::Sampler::create(params.sampling); !check)
    return refuse(failure(check.error()));

  // The tokens it may generate (every choice's) are taken from the client's allowance now and what
  // is left unused is given back when the last choice finishes; then places in the queue.
  const auto reservation = limiter.reserve(client, static_cast<size_t>(max_tokens) * choices,
                                           params.max_tokens.has_value(), Clock::now(), scale);
  if (!reservation.allowed) {
    ApiError e = rate_limited(reservation.reason, reservation.retry_after_s);
    e.param = "max_tokens";
    return refuse(e);
  }

  // The output's grammar: a forced tool call, or the response format.
  const bool forced_call = tools_offered && (tool_choice.kind == ToolChoice::Kind::Required ||
                                             tool_choice.kind == ToolChoice::Kind::Function);
  auto grammar = forced_call ? model->constraints->for_tool_choice(tools, tool_choice, model->tool_format)
                             : model->constraints->for_format(params.response_format,
                                                              ollama ? "format" : "response_format.json_schema.schema");
  if (!grammar) {
    limiter.settle(client, reservation.tokens, 0, Clock::now(), scale);
    return refuse(grammar.error());
  }
  const Tools answer_tools = tools_offered ? std::make_shared<const std::vector<ToolDefinition>>(std::move(tools)) : nullptr;
  const size_t reserved = reservation.tokens;
  const size_t per_choice = reserved / choices;
  if (per_choice == 0) {
    limiter.settle(client, reserved, 0, Clock::now(), scale);
    return refuse(rate_limited("the client's token allowance holds fewer tokens than the " +
                                   std::to_string(choices) + " choices asked for",
                               1));
  }
  // Settles the reservation once, when the last of the request's jobs finishes.
  struct Settlement {
    std::atomic<size_t> left, used{0};
  };
  auto settlement = std::make_shared<Settlement>();
  settlement->left = choices;
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (Prompt& prompt : prompts) {
    for (int i = 0; i < params.n; ++i) {
      GenerationSpec spec;
      spec.prompt = prompt.tokens;
      spec.max_tokens = static_cast<int>(per_choice);
      spec.sampling = params.sampling;
      spec.sampling.seed += static_cast<uint64_t>(i);
      spec.stops = params.stop;
      spec.grammar = *grammar;
      // Under a grammar the answer ends where the grammar says: the template's turn-end texts could
      // appear inside a JSON string and must not cut it.
      if (!spec.grammar)
        for (const auto& stop : prompt.stops) spec.stops.push_back(stop);
      spec.logprobs = params.logprobs;
      spec.logit_bias = params.logit_bias;
      spec.client = client;
      spec.priority = klass.priority;
      jobs.push_back(std::make_shared<GenerationJob>(std::move(spec), [this, client, reserved, scale,
                                                                       settlement](size_t used) {
        const size_t total = settlement->used += used;
        if (--settlement->left == 0) limiter.settle(client, reserved, total, Clock::now(), scale);
      }));
    }
  }
  for (size_t g = 0; g < prompts.size(); ++g) {
    std::vector<std::shared_ptr<GenerationJob>> group(jobs.begin() + static_cast<std::ptrdiff_t>(g * params.n),
                                                      jobs.begin() + static_cast<std::ptrdiff_t>((g + 1) * params.n));
    if (model->scheduler->submit_group(std::move(group))) continue;
    for (auto& job : jobs) {
      job->cancel();  // those already queued give their places up
      job->finish("error", Error{ErrorCode::Unavailable, "not queued"});  // gives the reservation back
    }
    return refuse(overloaded("the gateway is at capacity (" + std::to_string(options.scheduler.max_sessions) +
                                 " sessions busy, " + std::to_string(options.scheduler.max_queue) +
                                 " requests waiting); retry shortly",
                             1));
  }
  if (ollama) {
    const OllamaEndpoint which = route == Route::OllamaChat ? OllamaEndpoint::Chat : OllamaEndpoint::Generate;
    return respond_ollama(res, std::move(jobs.front()), which, model_name, params.stream, answer_tools);
  }
  ResponseIdentity who = new_response_identity(endpoint, desc.id);
  if (jobs.size() > 1) {
    if (params.stream) respond_streaming_choices(res, std::move(jobs), std::move(who), prompt_tokens, params.include_usage);
    else respond_whole_choices(res, std::move(jobs), std::move(who), prompt_tokens);
    return;
  }
  if (params.stream) respond_streaming(res, std::move(jobs.front()), std::move(who), params.include_usage, answer_tools);
  else respond_whole(res, std::move(jobs.front()), std::move(who), answer_tools);
}

namespace {

// What a request's choices produced so far, filled from their jobs' updates.
struct ChoiceState {
  std::string text;                      // a whole answer's text so far
  std::vector<TokenLogprob> logprobs;    // a whole answer's log-probs so far
  std::optional<JobUpdate> last;         // the update that finished it
  bool role_sent = false;                // a chat stream's first chunk went out
  size_t text_offset = 0;                // the log-probs' text_offset so far (streams)
};

// Waits up to `timeout` for news from the first unfinished job and then takes what the others
// have (a round gives every choice its token together, so one wait serves them all); `take`
// receives each update. True when every job has finished.
template <class Take>
bool poll_jobs(const std::vector<std::shared_ptr<GenerationJob>>& jobs, std::vector<ChoiceState>& states,
               std::chrono::milliseconds timeout, Take take) {
  bool waited = false, all_finished = true;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (states[i].last) continue;
    JobUpdate u = jobs[i]->wait(waited ? std::chrono::milliseconds(0) : timeout);
    waited = true;
    const bool finished = u.finished;
    take(i, u);
    if (finished) states[i].last = std::move(u);
    else all_finished = false;
  }
  return all_finished;
}

// The first failed choice's update, if any failed.
const JobUpdate* failed_choice(const std::vector<ChoiceState>& states) {
  for (const ChoiceState& c : states)
    if (c.last && (c.last->finish_reason == "error" || c.last->finish_reason == "cancelled")) return &*c.last;
  return nullptr;
}

void cancel_all(const std::vector<std::shared_ptr<GenerationJob>>& jobs) {
  for (const auto& job : jobs) job->cancel();
}

}  // namespace

void GatewayServer::Impl::respond_streaming_choices(httplib::Response& res,
                                                    std::vector<std::shared_ptr<GenerationJob>> jobs,
                                                    ResponseIdentity who, size_t prompt_tokens, bool include_usage) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // tell reverse proxies not to buffer the stream
  auto states = std::make_shared<std::vector<ChoiceState>>(jobs.size());
  auto arrived = jobs.front()->arrived();
  const bool logprobs = jobs.front()->spec().logprobs >= 0;
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, jobs, who, include_usage, states, arrived, prompt_tokens, logprobs](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        bool ok = true;
        if (who.endpoint == Endpoint::Chat) {
          // The role chunks go out at once: the client sees the answer begin before the prompt is through.
          for (size_t i = 0; ok && i < states->size(); ++i) {
            if ((*states)[i].role_sent) continue;
            ok = write(sse_event(dump(stream_chunk(who, "", true, std::nullopt, nullptr, i))));
            (*states)[i].role_sent = true;
          }
        }
        bool wrote = false;
        const bool all_finished = poll_jobs(jobs, *states, kStreamPoll, [&](size_t i, const JobUpdate& u) {
          ChoiceState& c = (*states)[i];
          if (ok && (!u.text.empty() || !u.logprobs.empty())) {
            json lp = logprobs_json(who.endpoint, logprobs ? &u.logprobs : nullptr, c.text_offset);
            ok = write(sse_event(dump(stream_chunk(who, u.text, !c.role_sent, std::nullopt, std::move(lp), i))));
            c.role_sent = true;
            wrote = true;
          }
          if (ok && u.finished && u.finish_reason != "error" && u.finish_reason != "cancelled") {
            ok = write(sse_event(dump(stream_chunk(who, "", !c.role_sent, u.finish_reason, nullptr, i))));
            c.role_sent = true;
            wrote = true;
          }
        });
        const JobUpdate* failed = failed_choice(*states);
        if (ok && !wrote && !all_finished && !failed) ok = write(sse_comment("waiting"));  // also how a vanished client is noticed
        if (ok && (all_finished || failed)) {
          metrics.observe_request_duration(seconds_since(arrived));
          if (failed) {
            cancel_all(jobs);
            ok = write(sse_event(dump(generation_failure(*failed).to_json())));
          } else if (include_usage) {
            size_t completion = 0;
            for (const ChoiceState& c : *states) completion += c.last->completion_tokens;
            ok = write(sse_event(dump(usage_chunk(who, {prompt_tokens, completion}))));
          }
          if (ok) ok = write(sse_done());
          if (ok) sink.done();
        }
        if (!ok) cancel_all(jobs);  // the client went away: free its sessions
        return ok;
      },
      [jobs](bool) { cancel_all(jobs); });  // no effect on finished jobs; frees abandoned ones
}

void GatewayServer::Impl::respond_streaming(httplib::Response& res, std::shared_ptr<GenerationJob> job,
                                            ResponseIdentity who, bool include_usage, Tools tools) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // tell reverse proxies not to buffer the stream
  auto first = std::make_shared<bool>(true);
  auto text_offset = std::make_shared<size_t>(0);  // the log-probs' text_offset so far
  // With tools, text that may be a call is held until the end, then sent as calls or as content.
  auto calls = tools ? std::make_shared<ToolCallStream>() : nullptr;
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, who, include_usage, first, text_offset, tools, calls](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        bool ok = true;
        if (*first && who.endpoint == Endpoint::Chat) {
          // The role chunk goes out at once: the client sees the answer begin before the prompt is through.
          ok = write(sse_event(dump(stream_chunk(who, "", true, std::nullopt))));
          *first = false;
        }
        JobUpdate u = job->wait(kStreamPoll);
        std::string finish_reason = u.finish_reason;
        if (calls) {
          u.text = calls->feed(u.text);
          if (u.finished && u.finish_reason != "error" && u.finish_reason != "cancelled") {
            ParsedAnswer answer = calls->finish(*tools);
            u.text += answer.content;
            if (!answer.calls.empty()) {
              if (ok && !u.text.empty()) ok = write(sse_event(dump(stream_chunk(who, u.text, *first, std::nullopt))));
              u.text.clear();
              for (const json& chunk : tool_call_chunks(who, answer.calls))
                if (ok) ok = write(sse_event(dump(chunk)));
              finish_reason = "tool_calls";
            }
          }
        }
        if (ok && (!u.text.empty() || !u.logprobs.empty())) {
          json logprobs = logprobs_json(who.endpoint, job->spec().logprobs >= 0 ? &u.logprobs : nullptr, *text_offset);
          ok = write(sse_event(dump(stream_chunk(who, u.text, *first, std::nullopt, std::move(logprobs)))));
          *first = false;
        } else if (ok && !u.finished) {
          ok = write(sse_comment("waiting"));  // also how a vanished client is noticed while queued
        }
        if (ok && u.finished) {
          metrics.observe_request_duration(seconds_since(job->arrived()));
          if (u.finish_reason == "error" || u.finish_reason == "cancelled") {
            ok = write(sse_event(dump(generation_failure(u).to_json())));
          } else {
            ok = write(sse_event(dump(stream_chunk(who, "", *first, finish_reason))));
            if (ok && include_usage) ok = write(sse_event(dump(usage_chunk(who, {u.prompt_tokens, u.completion_tokens}))));
          }
          if (ok) ok = write(sse_done());
          if (ok) sink.done();
        }
        if (!ok) job->cancel();  // the client went away: free its session
        return ok;
      },
      [job](bool) { job->cancel(); });  // no effect on a finished job; frees an abandoned one
}

void GatewayServer::Impl::respond_ollama(httplib::Response& res, std::shared_ptr<GenerationJob> job,
                                         OllamaEndpoint endpoint, std::string model, bool stream, Tools tools) {
  // Ollama streams NDJSON; a whole answer is the last object with all of the text. Either way the
  // status is committed with the first byte, so a failure after it is an {"error"} object.
  struct State {
    std::string text;  // a whole answer's text so far
    std::optional<std::chrono::nanoseconds> first_text;
    std::optional<ToolCallStream> calls;  // with tools: text that may be a call is held
  };
  auto state = std::make_shared<State>();
  if (tools) state->calls.emplace();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      stream ? "application/x-ndjson" : "application/json",
      [this, job, endpoint, model, stream, state, tools](size_t, httplib::DataSink& sink) {
        auto write = [&](const json& object) {
          const std::string line = dump(object) + "\n";
          return sink.write(line.data(), line.size());
        };
        JobUpdate u = job->wait(kStreamPoll);
        const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - job->arrived());
        bool ok = true;
        json tool_calls;  // Ollama's message.tool_calls, arguments as objects
        if (state->calls) {
          if (!u.text.empty() && !state->first_text) state->first_text = elapsed;
          u.text = state->calls->feed(u.text);
          if (u.finished && u.finish_reason != "error" && u.finish_reason != "cancelled") {
            ParsedAnswer answer = state->calls->finish(*tools);
            u.text += answer.content;
            for (const ToolCall& c : answer.calls)
              tool_calls.push_back({{"function", {{"name", c.name}, {"arguments", json::parse(c.arguments)}}}});
          }
        }
        if (!u.text.empty()) {
          if (!state->first_text) state->first_text = elapsed;
          if (stream) ok = write(ollama_chunk(endpoint, model, u.text));
          else state->text += u.text;
        } else if (!u.finished && !stream) {
          ok = sink.write(" ", 1);  // whitespace before the JSON value: how a vanished client is noticed
        }
        if (ok && u.finished) {
          metrics.observe_request_duration(seconds_since(job->arrived()));
          if (u.finish_reason == "error" || u.finish_reason == "cancelled") {
            ok = write(ollama_error(generation_failure(u)));
          } else {
            const OllamaTimings timings{elapsed, state->first_text.value_or(elapsed), u.prompt_tokens,
                                        u.completion_tokens};
            if (stream && !tool_calls.is_null()) {  // Ollama streams the calls in a message of their own
              json chunk = ollama_chunk(endpoint, model, "");
              chunk["message"]["tool_calls"] = tool_calls;
              ok = write(chunk);
            }
            json done = ollama_done(endpoint, model, stream ? "" : state->text, u.finish_reason, timings);
            if (!stream && !tool_calls.is_null() && done.contains("message")) done["message"]["tool_calls"] = tool_calls;
            if (ok) ok = write(done);
          }
          if (ok) sink.done();
        }
        if (!ok) job->cancel();  // the client went away: free its session
        return ok;
      },
      [job](bool) { job->cancel(); });
}

void GatewayServer::Impl::respond_whole(httplib::Response& res, std::shared_ptr<GenerationJob> job,
                                        ResponseIdentity who, Tools tools) {
  // Most answers finish quickly: wait here, so the status code can still say how it went.
  std::string text;
  auto logprobs = std::make_shared<std::vector<TokenLogprob>>();
  JobUpdate u;
  const auto deadline = Clock::now() + kPlainWaitBeforeKeepAlive;
  while (!u.finished && Clock::now() < deadline) {
    u = job->wait(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    text += u.text;
    for (auto& t : u.logprobs) logprobs->push_back(std::move(t));
  }
  auto body_of = [this, job, who, logprobs, tools](const std::string& all, const JobUpdate& last) {
    metrics.observe_request_duration(seconds_since(job->arrived()));
    size_t text_offset = 0;
    json lp = logprobs_json(who.endpoint, job->spec().logprobs >= 0 ? logprobs.get() : nullptr, text_offset);
    const Usage usage{last.prompt_tokens, last.completion_tokens};
    if (tools) {
      ParsedAnswer answer = parse_tool_calls(all, *tools);
      if (!answer.calls.empty()) return dump(tool_calls_response(who, answer, usage, std::move(lp)));
    }
    return dump(completion_response(who, all, last.finish_reason, usage, std::move(lp)));
  };
  if (u.finished) {
    if (u.finish_reason == "error" || u.finish_reason == "cancelled")
      return send_error(res, generation_failure(u));
    res.set_content(body_of(text, u), "application/json");
    return;
  }
  // A long one: the status is committed now, and whitespace (legal before a JSON value) goes out
  // each second until the answer is ready; a failed write means the client left.
  auto collected = std::make_shared<std::string>(std::move(text));
  res.set_chunked_content_provider(
      "application/json",
      [this, job, collected, body_of, logprobs](size_t, httplib::DataSink& sink) {
        JobUpdate next = job->wait(kStreamPoll);
        *collected += next.text;
        for (auto& t : next.logprobs) logprobs->push_back(std::move(t));
        bool ok = true;
        if (next.finished) {
          std::string body = (next.finish_reason == "error" || next.finish_reason == "cancelled")
                                 ? dump(generation_failure(next).to_json())
                                 : body_of(*collected, next);
          ok = sink.write(body.data(), body.size());
          if (ok) sink.done();
        } else {
          ok = sink.write(" ", 1);
        }
        if (!ok) job->cancel();
        return ok;
      },
      [job](bool) { job->cancel(); });
}

void GatewayServer::Impl::respond_whole_choices(httplib::Response& res, std::vector<std::shared_ptr<GenerationJob>> jobs,
                                                ResponseIdentity who, size_t prompt_tokens) {
  auto states = std::make_shared<std::vector<ChoiceState>>(jobs.size());
  auto collect = [states](size_t i, JobUpdate& u) {
    ChoiceState& c = (*states)[i];
    c.text += u.text;
    for (auto& t : u.logprobs) c.logprobs.push_back(std::move(t));
  };
  auto body_of = [this, jobs, who, states, prompt_tokens]() {
    metrics.observe_request_duration(seconds_since(jobs.front()->arrived()));
    if (const JobUpdate* failed = failed_choice(*states)) return dump(generation_failure(*failed).to_json());
    std::vector<CompletionChoice> choices;
    size_t completion = 0;
    for (ChoiceState& c : *states) {
      size_t text_offset = 0;
      const bool logprobs = jobs.front()->spec().logprobs >= 0;
      choices.push_back({std::move(c.text), c.last->finish_reason,
                         logprobs_json(who.endpoint, logprobs ? &c.logprobs : nullptr, text_offset)});
      completion += c.last->completion_tokens;
    }
    return dump(completion_response(who, choices, {prompt_tokens, completion}));
  };
  // Most answers finish quickly: wait here, so the status code can still say how it went.
  bool finished = false;
  const auto deadline = Clock::now() + kPlainWaitBeforeKeepAlive;
  while (!finished && !failed_choice(*states) && Clock::now() < deadline)
    finished = poll_jobs(jobs, *states,
                         std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()), collect);
  if (const JobUpdate* failed = failed_choice(*states)) {
    cancel_all(jobs);
    return send_error(res, generation_failure(*failed));
  }
  if (finished) {
    res.set_content(body_of(), "application/json");
    return;
  }
  // A long one: the status is committed now, and whitespace (legal before a JSON value) goes out
  // each second until the answer is ready; a failed write means the client left.
  res.set_chunked_content_provider(
      "application/json",
      [jobs, states, collect, body_of](size_t, httplib::DataSink& sink) {
        const bool all_finished = poll_jobs(jobs, *states, kStreamPoll, collect);
        const bool failed = failed_choice(*states) != nullptr;
        bool ok = true;
        if (all_finished || failed) {
          if (failed) cancel_all(jobs);
          const std::string body = body_of();
          ok = sink.write(body.data(), body.size());
          if (ok) sink.done();
        } else {
          ok = sink.write(" ", 1);
        }
        if (!ok) cancel_all(jobs);
        return ok;
      },
      [jobs](bool) { cancel_all(jobs); });
}

GatewayServer::GatewayServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GatewayServer::~GatewayServer() {
  if (impl_) stop();
}

Result<std::unique_ptr<GatewayServer>> GatewayServer::create(std::unique_ptr<ModelCatalog> catalog,
                                                             const GatewayOptions& options) {
  if (options.scheduler.max_sessions == 0) return Error{ErrorCode::InvalidArgument, "max sessions must be at least 1"};
  if (options.scheduler.max_batch_tokens == 0)
    return Error{ErrorCode::InvalidArgument, "max batch tokens must be at least 1"};
  auto access = AccessPolicy::create(options.access, options.host);
  if (!access) return access.error();
  std::optional<StaticSite> site;
  if (!options.web_dir.empty()) {
    auto loaded = StaticSite::load(options.web_dir);
    if (loaded) site = std::move(*loaded);
    else if (!loaded.error().is(ErrorCode::NotFound)) return loaded.error().with_context("web UI");
  }
  auto impl = std::make_unique<Impl>(std::move(catalog), options, std::move(*access), std::move(site));
  for (const CatalogEntry& m : impl->catalog->models()) {
    auto served = impl->serve_model(m.id);
    // A model gone since models() (a swarm changes) is no reason not to start.
    if (!served && served.error().code != ErrorCode::NotFound && served.error().code != ErrorCode::Unavailable)
      return served.error();
  }
  return std::unique_ptr<GatewayServer>(new GatewayServer(std::move(impl)));
}

Result<std::unique_ptr<GatewayServer>> GatewayServer::create(std::unique_ptr<EngineBackend> backend,
                                                             const GatewayOptions& options) {
  return create(std::make_unique<SingleModelCatalog>(std::move(backend)), options);
}

Result<int> GatewayServer::bind() {
  auto port = impl_->http.bind_listener(impl_->options.host, impl_->options.port);
  if (!port) return port.error();
  impl_->bound = true;
  return *port;
}

Result<void> GatewayServer::serve() {
  if (!impl_->bound) return Error{ErrorCode::Internal, "serve() before bind()"};
  if (!impl_->http.listen_after_bind()) return Error{ErrorCode::Internal, "the HTTP server stopped with an error"};
  return {};
}

const std::vector<std::string>& GatewayServer::allowed_hosts() const { return impl_->access.allowed_hosts(); }

void GatewayServer::stop() {
  impl_->http.stop();
  std::lock_guard lock(impl_->served_mutex);
  for (auto& [backend, s] : impl_->served) s->scheduler->shutdown();  // waiting streams get their error and end
}

}  // namespace omni::gateway
