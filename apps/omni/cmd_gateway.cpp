// omni gateway: serves a model to people over an OpenAI-compatible HTTP API (src/gateway), with the
// browser chat and swarm dashboard (web/dist) at /. The inference runs in this process (a local
// model file) or on a swarm's nodes (--bootstrap, --lan; gateway_catalog.h).
#include <malloc.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/fd_limit.h"
#include "base/parse.h"
#include "cli_options.h"
#include "commands.h"
#include "gateway/gateway_server.h"
#include "gateway/local_engine_backend.h"
#include "gateway_catalog.h"

namespace omni::cli {
namespace {

struct GatewayCliOptions {
  std::string listen = "127.0.0.1:8080";
  GatewaySource source;  // --model, --model-name, -t, -c and the swarm's flags
  std::string model_sha256;
  size_t max_queue = 64;
  size_t max_sessions = 4;
  size_t max_batch_tokens = gateway::SchedulerOptions{}.max_batch_tokens;
  double rate_requests = 0;
  double rate_tokens = 0;
  size_t max_body = 4 << 20;
  size_t max_connections = gateway::ConnectionLimits{}.max_connections;
  size_t max_connections_per_ip = gateway::ConnectionLimits{}.max_connections_per_ip;
  double head_timeout_s = gateway::ConnectionLimits{}.head_timeout.count() / 1000.0;
  double body_timeout_s = gateway::ConnectionLimits{}.body_timeout.count() / 1000.0;
  std::string web_dir;
  std::string chat_template;
  std::string chat_template_file;
  // Access (gateway/access_policy.h): keys from --api-key, --api-key-file and OMNI_API_KEY together.
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::vector<std::string> allowed_hosts;
  std::vector<std::string> allowed_origins;
  uint64_t fair_use_unit = gateway::FairUseOptions{}.work_unit;
  double fair_use_max_scale = gateway::FairUseOptions{}.max_scale;
  size_t free_every = gateway::SchedulerOptions{}.free_every;
};

int fail(const Error& e) { return cli::fail("gateway", e); }

// A value of one of the access lists, checked as AccessPolicy::create() will check it.
CLI::Validator access_entry(std::vector<std::string> gateway::AccessOptions::*list) {
  return CLI::Validator(
      [list](std::string& value) {
        gateway::AccessOptions one;
        (one.*list).push_back(value);
        auto policy = gateway::AccessPolicy::create(one, "");
        return policy ? std::string() : policy.error().message;
      },
      "", "");
}

// The web UI: --web-dir, else web/dist under the working directory, else where an installed omni
// keeps it (share/omni/web beside bin/: /usr/share/omni/web for /usr/bin/omni), else under the
// source tree.
std::string find_web_dir(const std::string& given) {
  if (!given.empty()) return given;
  std::error_code no_exe;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", no_exe);
  for (std::filesystem::path candidate : {std::filesystem::path("web/dist"),
                                          exe.parent_path().parent_path() / "share" / "omni" / "web",
                                          std::filesystem::path(OMNI_SOURCE_DIR) / "web" / "dist"}) {
    if (std::filesystem::exists(candidate / "index.html")) return candidate.string();
  }
  return "";
}

int run_gateway(const GatewayCliOptions& o) {
  auto listen = parse_host_port(o.listen);  // checked while parsing; the default is valid too
  if (!listen) return fail(listen.error().with_context("--listen"));

  gateway::AccessOptions access{o.api_keys, o.allowed_hosts, o.allowed_origins};
  if (!o.api_key_file.empty()) {
    auto keys = gateway::read_api_key_file(o.api_key_file);
    if (!keys) return fail(keys.error().with_context("--api-key-file"));
    access.api_keys.insert(access.api_keys.end(), keys->begin(), keys->end());
  }
  if (const char* key = std::getenv("OMNI_API_KEY"); key && *key) {
    if (auto valid = gateway::AccessPolicy::create({{key}, {}, {}}, ""); !valid)
      return fail(valid.error().with_context("OMNI_API_KEY"));
    access.api_keys.emplace_back(key);
  }

  // Before the stop signals are taken over: Ctrl-C during a model download ends it at once.
  GatewaySource source = o.source;
  source.address = o.listen;
  if (!source.model.empty())
    if (auto r = resolve_model(source.model, o.model_sha256, "", "gateway"); !r) return fail(r.error());

  // SIGINT/SIGTERM are taken by one thread with sigwait (blocked everywhere else, so every thread
  // the server starts inherits the mask); it stops the server, and main returns normally.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that vanished is a failed write, not a dead process
  // One descriptor per client connection: take all the process may have.
  if (auto files = raise_fd_limit(); !files) std::fprintf(stderr, "omni gateway: %s\n", files.error().message.c_str());
  // Request bodies and their copies (up to --max-body each) come from mmap and go back when freed:
  // a fixed threshold stops glibc from raising it after each free and keeping them in its heaps.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);

  // Fair use: what each node did for this gateway's own sessions (gateway/fair_use.h).
  std::shared_ptr<gateway::ContributionLedger> contributions;
  if (source.on_swarm()) {
    auto opened = gateway::ContributionLedger::open(data_dir_or_default(source.data_dir));
    if (!opened) return fail(opened.error());
    if (!(*opened)->recovered().empty())
      std::fprintf(stderr, "omni gateway: contribution ledger was corrupt, started afresh: %s\n",
                   (*opened)->recovered().c_str());
    contributions = *opened;
    source.contributions = contributions;
  }
  auto catalog = make_gateway_catalog(source, [](const std::string& line) {
    std::fprintf(stderr, "omni gateway: %s\n", line.c_str());
  });
  if (!catalog) return fail(catalog.error());
  std::string model_id;
  for (const auto& m : (*catalog)->models()) model_id += (model_id.empty() ? "" : ", ") + m.id;
  if (model_id.empty()) model_id = "the swarm's models";

  gateway::GatewayOptions options;
  options.host = listen->host;
  options.port = listen->port;
  options.max_body_bytes = o.max_body;
  options.connection_limits.max_connections = o.max_connections;
  options.connection_limits.max_connections_per_ip = o.max_connections_per_ip;
  options.connection_limits.head_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.head_timeout_s * 1000));
  options.connection_limits.body_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.body_timeout_s * 1000));
  options.web_dir = find_web_dir(o.web_dir);
  options.chat_template = o.chat_template;
  if (!o.chat_template_file.empty()) {
    std::ifstream in(o.chat_template_file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in || text.str().empty())
      return fail(Error{ErrorCode::InvalidArgument, "cannot read the chat template file " + o.chat_template_file});
    options.chat_template_source = text.str();
  }
  options.rate_limits = {o.rate_requests, o.rate_tokens};
  options.scheduler = {o.max_sessions, o.max_queue, o.max_batch_tokens, o.free_every};
  options.access = std::move(access);
  options.contributions = contributions;
  options.fair_use = {o.fair_use_unit, o.fair_use_max_scale};
  auto server = gateway::GatewayServer::create(std::move(*catalog), options);
  if (!server) return fail(server.error());
  auto port = (*server)->bind();
  if (!port) return fail(port.error());

  std::thread signal_thread([&stop_signals, s = server->get()] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    if (signal_number == SIGINT || signal_number == SIGTERM) s->stop();
  });
  std::fprintf(stderr, "omni gateway: serving %s on http://%s:%d (web UI: %s; %zu sessions, queue %zu)\n",
               model_id.c_str(), listen->host.c_str(), *port,
               options.web_dir.empty() ? "not built" : options.web_dir.c_str(), o.max_sessions, o.max_queue);
  std::string hosts;
  for (const auto& h : (*server)->allowed_hosts()) hosts += (hosts.empty() ? "" : ", ") + h;
  std::fprintf(stderr, "omni gateway: API key %s; Host %s\n",
               options.access.api_keys.empty() ? "not required" : "required",
               hosts.empty() ? "any" : ("one of " + hosts).c_str());
  std::fprintf(stderr, "omni gateway: listening on port %d\n", *port);
  std::fflush(stderr);
  auto served = (*server)->serve();
  // The signal thread may still be waiting: wake it with a signal it takes, then join it.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  server->reset();
  if (!served) return fail(served.error());
  std::fprintf(stderr, "omni gateway: stopped\n");
  return 0;
}

}  // namespace

void register_gateway(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<GatewayCliOptions>();
  auto* cmd = app.add_subcommand("gateway", "Serve a model over an OpenAI-compatible HTTP API with a web UI");
  add_host_port(cmd, "--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("-m,--model", o->source.model,
                  "GGUF model file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV]; with --bootstrap or --lan also a "
                  "model CID, or left out: every model the swarm fully covers");
  add_model_sha256(cmd, o->model_sha256);
  cmd->add_option("--model-name", o->source.model_name, "The model's name in the API (default: the file name)");
  add_threads(cmd, o->source.threads);
  cmd->add_option("-c,--ctx-size", o->source.ctx, "Context per session (default: min(training context, 4096))")
      ->check(count_in(0, UINT32_MAX));
  cmd->add_option("--max-sessions", o->max_sessions, "Generations running at once")
      ->capture_default_str()
      ->check(count_in(1));
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens,
                  "Tokens per step of the running generations together: every decoding token, then whole prompt "
                  "chunks while they fit (one at least)")
      ->capture_default_str()
      ->check(count_in(1, 1 << 20));
  cmd->add_option("--prefill-chunk", o->source.prefill_chunk,
                  "Local model: prompt tokens per step of one generation (smaller: others' tokens come sooner "
                  "during a long prompt; 512 gives `omni run`'s tokens bit for bit)")
      ->capture_default_str()
      ->check(count_in(1, gateway::LocalEngineBackend::kMaxPrefillChunk));
  cmd->add_option("--max-queue", o->max_queue, "Requests waiting for a session; more get 503")
      ->capture_default_str()
      ->check(count_in(0));
  cmd->add_option("--rate-requests", o->rate_requests, "Requests per minute per client IP (0: no limit)")
      ->capture_default_str()
      ->check(number_in(0));
  cmd->add_option("--rate-tokens", o->rate_tokens, "Generated tokens per minute per client IP (0: no limit)")
      ->capture_default_str()
      ->check(number_in(0));
  cmd->add_option("--max-body", o->max_body, "Largest request body in bytes (413 beyond)")
      ->capture_default_str()
      ->check(count_in(1, INT64_MAX));
  cmd->add_option("--max-connections", o->max_connections, "Open connections at once; more get 503")
      ->capture_default_str()
      ->check(count_in(1, 1000000));
  cmd->add_option("--max-connections-per-ip", o->max_connections_per_ip,
                  "Open connections at once from one client IP; more get 503")
      ->capture_default_str()
      ->check(count_in(1, 1000000));
  cmd->add_option("--head-timeout", o->head_timeout_s, "Seconds a client has to send a request's head (408 beyond)")
      ->capture_default_str()
      ->check(number_in(0.1, 3600));
  cmd->add_option("--body-timeout", o->body_timeout_s, "Seconds a client has to send a request's body (408 beyond)")
      ->capture_default_str()
      ->check(number_in(0.1, 3600));
  cmd->add_option("--web-dir", o->web_dir, "The web UI's files (default: web/dist if built, else the installed /usr/share/omni/web)");
  cmd->add_option("--chat-template", o->chat_template,
                  "Chat template by name (default: the model's own, else chatml)");
  cmd->add_option("--chat-template-file", o->chat_template_file,
                  "A Jinja chat template to use instead of the model's own (e.g. one that knows tools)")
      ->check(CLI::ExistingFile)
      ->excludes("--chat-template");
  cmd->add_option("--api-key", o->api_keys,
                  "Require 'Authorization: Bearer KEY' on /v1 and /metrics (repeatable; also --api-key-file and "
                  "the OMNI_API_KEY environment variable, which other users cannot see in ps). KEY=NODEID binds the "
                  "key to a node's peer id instead (fair use: priority and limits by the node's contribution; "
                  "anonymous requests stay allowed, in the free tier)")
      ->check(access_entry(&gateway::AccessOptions::api_keys));
  cmd->add_option("--fair-use-unit", o->fair_use_unit,
                  "Fair use: work (tokens x blocks a node computed for this gateway) that earns one more time the "
                  "rate limits")
      ->capture_default_str()
      ->check(count_in(1, INT64_MAX));
  cmd->add_option("--fair-use-max-scale", o->fair_use_max_scale, "Fair use: the most a contribution multiplies the rate limits by")
      ->capture_default_str()
      ->check(number_in(1, 1e6));
  cmd->add_option("--free-every", o->free_every,
                  "Fair use: under load, at least one admission in this many goes to the free tier")
      ->capture_default_str()
      ->check(count_in(1, 1000));
  cmd->add_option("--api-key-file", o->api_key_file, "A file of API keys, one a line ('#' comments)");
  cmd->add_option("--allowed-host", o->allowed_hosts,
                  "Host header names served, NAME or NAME:PORT, '*' any (repeatable; default on a loopback "
                  "address: localhost, 127.0.0.1, [::1]; otherwise any); others get 403")
      ->check(access_entry(&gateway::AccessOptions::allowed_hosts));
  cmd->add_option("--allowed-origin", o->allowed_origins,
                  "Web origins besides the gateway's own that may call the API (CORS), e.g. "
                  "https://app.example.com, '*' any (repeatable); others get 403")
      ->check(access_entry(&gateway::AccessOptions::allowed_origins));
  add_gateway_swarm_flags(cmd, o->source);
  cmd->callback([o, &exit_code] {
    if (o->source.model.empty() && o->source.bootstrap.empty() && !o->source.lan)
      throw CLI::ValidationError("--model is required without --bootstrap or --lan");
    // A local model verifying drafts competes with the draft for the same cores, and its
    // batched rounds already fill them: drafting is for the swarm's round trips.
    if (!o->source.draft.empty() && (!o->source.on_swarm() || o->source.model.empty()))
      throw CLI::ValidationError("--draft works on a swarm (--bootstrap, --lan or --peers) with --model");
    exit_code = run_gateway(*o);
  });
}

}  // namespace omni::cli
