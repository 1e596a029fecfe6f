// omni run: generates text from a prompt with a local model, streaming it to stdout; with --json,
// one JSON object per generated token (id, logprob, top log-probs) for comparisons.
//
// With the blocks on other nodes (--peers, --bootstrap, --lan), --model may be a model CID: the
// client then holds only what it computes itself (the embeddings shard, with the tokenizer and
// metadata, and the head shard), fetched into its store from --peers or from the nodes that
// provide them in the swarm, and maps none of the blocks' weights.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_options.h"
#include "commands.h"
#include "model/prompt_template.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "net/peer_fetch.h"
#include "net/pipeline.h"
#include "net/speculative_decoder.h"
#include "store/blob_store.h"
#include "store/sharded_model.h"
#include "swarm/client_shards.h"
#include "swarm/dht_directory.h"
#include "swarm/provider_fetch.h"
#include "swarm/swarm_client.h"

namespace omni::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct RunOptions {
  ModelSource model;
  std::string prompt;
  std::string system;
  int n_predict = 128;  // -1: until end of generation or a full context, as llama.cpp
  int threads = 0;
  uint32_t ctx = 0;
  bool chat = false;
  std::string chat_template;
  int top_logprobs = 0;
  bool json = false;
  std::vector<std::string> stops;
  bool ignore_eos = false;
  model::SamplingParams sampling;
  // Remote blocks (--peers): the nodes run the blocks, this process the tokenizer, sampling and head.
  std::string peers;
  std::string hidden_format = "f16";
  std::string route = "ring";
  std::string hop_addresses;  // --hop-addresses: where the nodes reach each other, by peer id
  std::string data_dir;
  uint32_t receipt_every = net::RemoteOptions{}.receipt_every;  // credits: tokens per receipt and node
  double call_timeout_s = 60;
  // --bootstrap: the nodes come from the swarm's directory (src/swarm), with failover.
  std::vector<std::string> bootstrap;
  bool lan = false;  // find the swarm's DHT nodes on the LAN by multicast (with or without --bootstrap)
  double stall_timeout_s = 3;  // --stall-timeout: a silent node of the chain is dropped after this
  // Speculative decoding (net/speculative_decoder.h).
  std::string draft;            // --draft: a small GGUF with the same vocabulary
  uint32_t draft_max = 8;       // --draft-max: K's upper bound
  bool draft_fixed = false;     // --draft-fixed: K = draft_max every round
  std::string lookup = "auto";  // --lookup: prompt-lookup drafts without --draft (auto: when greedy)
  double verify_rate = 0.02;   // --verify-rate, --verify-first: swarm spot checks (swarm_client.h)
  uint32_t verify_first = 2;
};

// Builds the prompt's tokens: raw text (BOS as the vocabulary asks, special-token texts left as
// text), or a chat conversation rendered by the model's template (special tokens parsed in its
// markup only: the prompt and system texts stay text, as the gateway does).
Result<std::vector<int32_t>> prompt_tokens(const RunOptions& o, const model::Model& m, const model::Tokenizer& tok,
                                           std::vector<std::string>& stops) {
  if (!o.chat) return tok.encode(o.prompt, /*add_special=*/true, /*parse_special=*/false);
  const gguf::Metadata& md = m.file().metadata();
  auto text_of = [&](std::optional<int32_t> id) { return id ? tok.token_to_piece(*id, true) : std::string(); };
  Result<model::PromptTemplate> tmpl = Error{""};
  if (!o.chat_template.empty()) {
    tmpl = model::PromptTemplate::builtin(o.chat_template, text_of(tok.bos()), text_of(tok.eos()));
  } else if (auto src = model::model_chat_template(md)) {
    tmpl = model::PromptTemplate::jinja(*src, text_of(tok.bos()), text_of(tok.eos()));
  } else {
    return Error{ErrorCode::InvalidArgument, "the model has no tokenizer.chat_template; name one with --chat-template"};
  }
  if (!tmpl) return tmpl.error();
  std::vector<model::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.prompt});
  auto rendered = tmpl->render(messages, /*add_generation_prompt=*/true);
  if (!rendered) return rendered.error();
  for (const auto& s : tmpl->stop_strings()) stops.push_back(s);
  std::vector<model::TextSpan> spans;
  for (const model::ChatSegment& s : rendered->segments) spans.push_back({s.text, /*special=*/!s.from_message});
  // A template that writes BOS itself must not get a second one from the tokenizer.
  return tok.encode(spans, /*add_special=*/!tmpl->writes_bos(*rendered));
}

void log_line(const std::string& line) { std::fprintf(stderr, "omni run: %s\n", line.c_str()); }

// The model this process computes with, and what it needs for the blocks that run elsewhere.
struct RunModel {
  std::unique_ptr<model::Model> model;
  std::optional<net::ModelIdentity> identity;    // from a model CID: its source file's
  std::unique_ptr<swarm::DhtDirectory> directory;  // --bootstrap/--lan: the DHT node, started once
};

bool blocks_elsewhere(const RunOptions& o) { return !o.peers.empty() || !o.bootstrap.empty() || o.lan; }

// A model CID with the blocks elsewhere: the embeddings and head shards, fetched into the store
// (--store, default <data dir>/store) unless it has them, loaded without any block.
Result<RunModel> load_client_shards(const RunOptions& o, const store::Cid& cid) {
  RunModel out;
  const std::string data_dir = data_dir_or_default(o.data_dir);
  const std::string store_dir = o.model.store_dir.empty() ? data_dir + "/store" : o.model.store_dir;
  std::error_code ec;
  std::filesystem::create_directories(store_dir, ec);
  if (ec) return Error{ErrorCode::Internal, "cannot create the store directory " + store_dir + ": " + ec.message()};
  auto st = store::BlobStore::open(store_dir);
  if (!st) return st.error();
  if (!o.bootstrap.empty() || o.lan) {
    swarm::DhtOptions dht;
    dht.bootstrap = o.bootstrap;
    dht.lan = o.lan;
    auto started = swarm::DhtDirectory::start(dht);
    if (!started) return started.error();
    out.directory = std::move(*started);
  }
  // A peer that vanishes mid-write must be an error on that connection, not the end of the run.
  std::signal(SIGPIPE, SIG_IGN);
  swarm::ProviderFetchOptions fetching;
  fetching.fetch.peers = o.peers;
  fetching.fetch.data_dir = data_dir;
  fetching.fetch.log = log_line;
  auto loaded = swarm::load_client_shards(**st, cid, out.directory.get(), fetching);
  if (!loaded) return loaded.error();
  out.identity = loaded->identity;
  out.model = std::move(loaded->model);
  return out;
}

Result<RunModel> load_run_model(const RunOptions& o) {
  struct stat st;
  const bool is_file = ::stat(o.model.model.c_str(), &st) == 0;
  if (!is_file && o.model.store_dir.empty() && !blocks_elsewhere(o) && store::Cid::parse(o.model.model))
    return Error{ErrorCode::InvalidArgument, "model " + o.model.model +
                                                 " is a CID: give --store with its shards, or run the blocks on "
                                                 "other nodes (--bootstrap, --lan or --peers) to fetch what this "
                                                 "client needs"};
  if (!is_file && blocks_elsewhere(o))
    if (auto cid = store::Cid::parse(o.model.model)) return load_client_shards(o, *cid);
  auto loaded = load_model(o.model);
  if (!loaded) return loaded.error();
  RunModel out;
  out.model = std::move(*loaded);
  return out;
}

// The blocks run here (no --peers) or on the nodes listed in --peers.
Result<std::unique_ptr<net::Pipeline>> make_pipeline(const RunOptions& o, RunModel& rm, uint32_t n_ctx,
                                                     kernels::ThreadPool& pool) {
  const model::Model& m = *rm.model;
  if (!o.bootstrap.empty() || o.lan) {
    swarm::SwarmClientOptions so;
    auto encoding = net::parse_hidden_encoding(o.hidden_format);
    if (!encoding) return encoding.error();
    so.encoding = *encoding;
    auto topology = net::parse_topology(o.route);
    if (!topology) return topology.error();
    so.topology = *topology;
    so.data_dir = data_dir_or_default(o.data_dir);
    so.call_timeout_s = whole_seconds(o.call_timeout_s);
    so.stall_ms = static_cast<uint32_t>(o.stall_timeout_s * 1000);
    so.verify_rate = o.verify_rate;
    so.verify_first = o.verify_first;
    so.fault_dir = so.data_dir + "/faults";
    so.receipt_every = o.receipt_every;
    so.log = log_line;
    so.model_identity = rm.identity;
    if (rm.directory) return swarm::make_swarm_pipeline(m, std::move(rm.directory), so, n_ctx, pool);
    return swarm::make_swarm_pipeline(m, o.bootstrap, o.lan, so, n_ctx, pool);
  }
  if (o.peers.empty()) return net::make_local_pipeline(m, n_ctx, pool);
  net::RemoteOptions remote;
  auto peers = net::parse_peer_list(o.peers);
  if (!peers) return peers.error();
  remote.peers = std::move(*peers);
  if (!o.hop_addresses.empty()) {
    auto hops = net::parse_peer_list(o.hop_addresses);
    if (!hops) return hops.error().with_context("--hop-addresses");
    remote.hop_addresses = std::move(*hops);
  }
  auto encoding = net::parse_hidden_encoding(o.hidden_format);
  if (!encoding) return encoding.error();
  remote.encoding = *encoding;
  auto topology = net::parse_topology(o.route);
  if (!topology) return topology.error();
  remote.topology = *topology;
  remote.data_dir = data_dir_or_default(o.data_dir);
  remote.call_timeout_s = whole_seconds(o.call_timeout_s);
  remote.receipt_every = o.receipt_every;
  remote.log = log_line;
  remote.model_identity = rm.identity;
  if (!remote.model_identity) {  // a file: its content's CID, hashed once per data directory
    auto identified = net::identify_model(m, remote.data_dir);
    if (!identified) return identified.error();
    remote.model_identity = std::move(*identified);
  }
  return net::make_remote_pipeline(m, remote, n_ctx, pool);
}

int run(RunOptions o) {
  auto fail = [](const Error& e) { return cli::fail("run", e); };
  const std::string store_dir = store_dir_or_default(o.model.store_dir, o.data_dir);
  if (auto r = resolve_model(o.model.model, o.model.sha256, store_dir, "run"); !r) return fail(r.error());
  auto loaded = load_run_model(o);
  if (!loaded) return fail(loaded.error());
  const model::Model& model = *loaded->model;
  auto tokenizer = model::Tokenizer::from_metadata(model.file().metadata());
  if (!tokenizer) return fail(tokenizer.error());
  auto sampler = model::Sampler::create(o.sampling);
  if (!sampler) return fail(sampler.error());

  std::vector<std::string> stops = o.stops;
  auto tokens = prompt_tokens(o, model, *tokenizer, stops);
  if (!tokens) return fail(tokens.error());
  if (tokens->empty()) return fail(Error{ErrorCode::InvalidArgument, "the prompt is empty"});

  const model::ModelConfig& cfg = model.config();
  uint32_t n_ctx = o.ctx ? o.ctx : std::min<uint32_t>(cfg.n_ctx_train, 4096);
  // A fixed length gets the context it needs; -n -1 generates until the context is full.
  const bool until_full = o.n_predict < 0;
  if (!until_full && tokens->size() + static_cast<size_t>(o.n_predict) > n_ctx)
    n_ctx = static_cast<uint32_t>(tokens->size() + o.n_predict);
  if (until_full && tokens->size() >= n_ctx)
    return fail(Error{ErrorCode::InvalidArgument, "the prompt's " + std::to_string(tokens->size()) +
                                                      " tokens leave no room in the context of " +
                                                      std::to_string(n_ctx) + " (give a larger -c)"});
  // Beyond its training context a model's output is not meaningful, and the KV cache would grow
  // with whatever -n or -c asked for.
  if (cfg.n_ctx_train && n_ctx > cfg.n_ctx_train)
    return fail(Error{ErrorCode::InvalidArgument,
                      "a context of " + std::to_string(n_ctx) + " tokens (-c, or the prompt's " +
                          std::to_string(tokens->size()) + " tokens and -n) is more than the model's training context of " +
                          std::to_string(cfg.n_ctx_train)});
  const int limit = until_full ? static_cast<int>(n_ctx - tokens->size()) : o.n_predict;
  const int threads = threads_to_use(o.threads);
  kernels::ThreadPool pool(threads);
  auto session = make_pipeline(o, *loaded, n_ctx, pool);
  if (!session) return fail(session.error());

  std::unique_ptr<model::Model> draft_model;
  if (!o.draft.empty()) {
    auto d = model::Model::load(o.draft);
    if (!d) return fail(d.error().with_context("--draft"));
    draft_model = std::move(*d);
  }
  net::DraftOptions drafting;
  drafting.draft = draft_model.get();
  drafting.max_draft = o.draft_max;
  drafting.adapt = !o.draft_fixed;
  // Seeded sampling stays reproducible only without drafts chosen by timing: lookup is on by
  // default for greedy runs (whose output drafts never change).
  drafting.lookup = o.lookup == "on" || (o.lookup == "auto" && o.sampling.temperature <= 0.0f);
  auto decoder = net::SpeculativeDecoder::create(**session, model, *sampler, drafting, n_ctx, pool);
  if (!decoder) return fail(decoder.error());

  const auto t0 = Clock::now();
  if (auto r = (*decoder)->prefill(*tokens); !r) return fail(r.error());
  const auto t1 = Clock::now();

  model::Detokenizer detok(*tokenizer);
  model::StopDetector stop(stops);
  int generated = 0;
  std::string finish = until_full ? "context" : "length";
  bool done = false;
  while (!done && generated < limit) {
    auto produced = (*decoder)->next(static_cast<uint32_t>(limit - generated));
    if (!produced) return fail(produced.error());
    for (const auto& token : *produced) {
      const int32_t id = token.id;
      const std::span<const float> logits = token.logits;
      if (o.json) {
        nlohmann::json line;
        line["id"] = id;
        auto top = model::top_logprobs(logits, std::max(o.top_logprobs, 1));
        line["logprob"] = model::token_logprob(logits, id);
        nlohmann::json top_json = nlohmann::json::array();
        for (int k = 0; k < o.top_logprobs && k < static_cast<int>(top.size()); ++k)
          top_json.push_back({top[k].first, top[k].second});
        line["top"] = std::move(top_json);
        line["text"] = tokenizer->token_to_piece(id);
        std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      }
      if (!o.ignore_eos && tokenizer->is_end_of_generation(id)) {
        finish = "stop";
        done = true;
        break;
      }
      if (!o.json) {
        auto piece = detok.feed(id);
        if (!piece) return fail(piece.error());
        std::string shown = stop.feed(*piece);
        std::fwrite(shown.data(), 1, shown.size(), stdout);
        std::fflush(stdout);
        if (stop.stopped()) {
          finish = "stop";
          ++generated;
          done = true;
          break;
        }
      }
      ++generated;
    }
  }
  if (!o.json) {
    std::string rest = stop.stopped() ? "" : stop.feed(detok.flush()) + stop.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
  }
  const auto t2 = Clock::now();
  const double prompt_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "\nomni run: prompt %zu tokens in %.2f s (%.1f tok/s), generated %d tokens in %.2f s (%.1f tok/s), "
               "finish: %s, threads %d, context %u, %s\n",
               tokens->size(), prompt_s, tokens->size() / std::max(prompt_s, 1e-9), generated, gen_s,
               generated / std::max(gen_s, 1e-9), finish.c_str(), threads, n_ctx,
               ((*session)->summary() + ((*decoder)->stats().rounds ? ", " + (*decoder)->summary() : "")).c_str());
  return 0;
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text with a local model");
  add_model_source(cmd, o->model, /*with_store=*/true);
  cmd->get_option("--model")->description(
      "GGUF model file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV] (fetched once into the store), or a model "
      "CID: with --store, loaded from that store; with --peers, --bootstrap or --lan, "
      "only the embeddings and head shards, fetched from the nodes that provide them into --store (default "
      "<data dir>/store)");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (-1: until end of generation or a full context)")
      ->capture_default_str()
      ->check(count_in(-1, INT32_MAX));
  add_threads(cmd, o->threads);
  cmd->add_option("-c,--ctx-size", o->ctx, "Context length (default: min(training context, 4096))")
      ->check(count_in(0, UINT32_MAX));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(number_in(0));
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->capture_default_str()->check(count_in(0, INT32_MAX));
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->capture_default_str()->check(number_in(0, 1));
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->capture_default_str()->check(number_in(0, 1));
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str()
      ->check(number_above(0));
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the penalties look back (-1: all)")
      ->capture_default_str()
      ->check(count_in(-1, INT32_MAX));
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "OpenAI frequency penalty");
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "OpenAI presence penalty");
  cmd->add_option("--seed", o->sampling.seed, "Random seed")->capture_default_str()->check(count_in(0));
  cmd->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--chat-template", o->chat_template, "Chat template by name (chatml, llama2, llama3, ...)");
  cmd->add_option("--system", o->system, "System message (with --chat)");
  cmd->add_option("--stop", o->stops, "Stop string (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-generation tokens");
  auto* json = cmd->add_flag("--json", o->json, "One JSON object per generated token: id, logprob, top");
  cmd->add_option("--top-logprobs", o->top_logprobs, "With --json: how many top log-probs per token")
      ->check(count_in(0, INT32_MAX))
      ->needs(json);
  auto* peers = add_peer_list(cmd, "--peers", o->peers, "Run the blocks on these nodes: [ID@]HOST:PORT,... (see omni node)");
  cmd->add_option("--hidden-format", o->hidden_format, "With --peers: hidden states as f16, f32 or q8")
      ->capture_default_str()
      ->check(hidden_format_name());
  cmd->add_option("--route", o->route,
                  "With --peers: ring (nodes forward, the last answers the client), chain (the answer retraces "
                  "the chain) or direct (client calls each)")
      ->capture_default_str()
      ->check(route_name());
  add_peer_list(cmd, "--hop-addresses", o->hop_addresses,
                "With --peers: ID@HOST:PORT,... where the nodes reach each other (default: the --peers addresses)");
  add_data_dir(cmd, o->data_dir,
               "Directory of this client's identity key (with --peers or --bootstrap) and of its store (a model CID's shards, "
               "a model URL's file)");
  add_timeout(cmd, "--timeout", o->call_timeout_s, "With --peers: seconds a node may take per call (whole seconds, rounded up)")
      ->capture_default_str();
  auto* lan = cmd->add_flag("--lan", o->lan, "Run the blocks on the swarm found on the LAN by multicast (OpenDHT peer discovery)");
  auto* bootstrap = add_host_port_list(cmd, "--bootstrap", o->bootstrap,
                                       "Run the blocks on the swarm found through these DHT nodes, HOST:PORT");
  peers->excludes(lan)->excludes(bootstrap);
  add_timeout(cmd, "--stall-timeout", o->stall_timeout_s,
              "With --bootstrap: seconds a node of the chain may answer no heartbeat while a call waits "
              "before it is routed around (0: only --timeout)",
              /*zero_means_off=*/true)
      ->capture_default_str();
  cmd->add_option("--draft", o->draft,
                  "Speculative decoding: a small GGUF with the model's vocabulary (e.g. a Q8_0 copy of an F16 model) "
                  "drafts tokens that the model verifies several per call")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--draft-fixed", o->draft_fixed,
                "Draft --draft-max tokens every call instead of adapting K (to measure one K)");
  cmd->add_option("--draft-max", o->draft_max, "Most tokens drafted per call (adapted below it; 0: no drafting)")
      ->capture_default_str()
      ->check(count_in(0, 15));
  cmd->add_option("--lookup", o->lookup,
                  "Without --draft, draft from the context (prompt lookup): on, off, or auto (on when greedy; "
                  "turned down when its drafts are not accepted)")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off", "auto"}));
  cmd->add_option("--verify-rate", o->verify_rate,
                  "With --bootstrap: the fraction of calls spot-checked on other replicas (nodes caught returning "
                  "wrong results are excluded; fault reports go to <data-dir>/faults)")
      ->check(number_in(0, 1))
      ->capture_default_str();
  cmd->add_option("--verify-first", o->verify_first,
                  "With --bootstrap: calls checked while their route holds a node not yet matched this often")
      ->check(count_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--receipt-every", o->receipt_every,
                  "With --peers or --bootstrap: pay each node a signed work receipt every this many tokens it "
                  "computed (credits; the rest when the run ends); 0: no receipts")
      ->capture_default_str()
      ->check(count_in(0, UINT32_MAX));
  cmd->callback([o, &exit_code] { exit_code = run(*o); });
}

}  // namespace omni::cli
