// omni run: generates text from a prompt with a local model, streaming it to stdout; with --json,
// one JSON object per generated token (id, logprob, top log-probs) for comparisons.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "store/sharded_model.h"
#include "net/identity.h"
#include "net/pipeline.h"
#include "swarm/swarm_client.h"

namespace omni::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct RunOptions {
  std::string model_path;
  std::string store_dir;  // --store: model_path is a model CID in this store (src/store)
  std::string prompt;
  std::string system;
  int n_predict = 128;
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
  uint32_t call_timeout_s = 60;
  // --bootstrap: the nodes come from the swarm's directory (src/swarm), with failover.
  std::vector<std::string> bootstrap;
  bool lan = false;  // find the swarm's DHT nodes on the LAN by multicast (with or without --bootstrap)
  double stall_timeout_s = 3;  // --stall-timeout: a silent node of the chain is dropped after this
};

int fail(const std::string& message) {
  std::fprintf(stderr, "omni run: %s\n", message.c_str());
  return 1;
}

// Builds the prompt's tokens: raw text (BOS as the vocabulary asks, special-token texts left as
// text), or a chat conversation rendered by the model's template (special tokens parsed).
Result<std::vector<int32_t>> prompt_tokens(const RunOptions& o, const model::Model& m, const model::Tokenizer& tok,
                                           std::vector<std::string>& stops) {
  if (!o.chat) return tok.encode(o.prompt, /*add_special=*/true, /*parse_special=*/false);
  const gguf::Metadata& md = m.file().metadata();
  auto text_of = [&](std::optional<int32_t> id) { return id ? tok.token_to_piece(*id, true) : std::string(); };
  Result<model::ChatTemplate> tmpl = Error{""};
  if (!o.chat_template.empty()) {
    tmpl = model::ChatTemplate::by_name(o.chat_template, text_of(tok.bos()), text_of(tok.eos()));
  } else if (const auto* src = md.find("tokenizer.chat_template"); src && src->as_string()) {
    tmpl = model::ChatTemplate::detect(*src->as_string(), text_of(tok.bos()), text_of(tok.eos()));
  } else {
    return Error{"the model has no tokenizer.chat_template; name one with --chat-template"};
  }
  if (!tmpl) return tmpl.error();
  std::vector<model::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.prompt});
  auto text = tmpl->apply(messages, /*add_generation_prompt=*/true);
  if (!text) return text.error();
  for (auto& s : tmpl->stop_strings()) stops.push_back(s);
  // A template that writes BOS itself must not get a second one from the tokenizer.
  return tok.encode(*text, /*add_special=*/!tmpl->renders_bos(), /*parse_special=*/true);
}

// The blocks run here (no --peers) or on the nodes listed in --peers.
Result<std::unique_ptr<net::Pipeline>> make_pipeline(const RunOptions& o, const model::Model& m, uint32_t n_ctx,
                                                     kernels::ThreadPool& pool) {
  if (!o.bootstrap.empty() || o.lan) {
    if (!o.peers.empty()) return Error{"give --peers or --bootstrap/--lan, not both"};
    swarm::SwarmClientOptions so;
    auto encoding = net::parse_hidden_encoding(o.hidden_format);
    if (!encoding) return encoding.error();
    so.encoding = *encoding;
    auto topology = net::parse_topology(o.route);
    if (!topology) return topology.error();
    so.topology = *topology;
    so.data_dir = o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir;
    so.call_timeout_s = o.call_timeout_s;
    if (!(o.stall_timeout_s >= 0 && o.stall_timeout_s <= 3600)) return Error{"--stall-timeout must be 0..3600 s"};
    so.stall_ms = static_cast<uint32_t>(o.stall_timeout_s * 1000);
    so.log = [](const std::string& line) { std::fprintf(stderr, "omni run: %s\n", line.c_str()); };
    return swarm::make_swarm_pipeline(m, o.bootstrap, o.lan, so, n_ctx, pool);
  }
  if (o.peers.empty()) return net::make_local_pipeline(m, n_ctx, pool);
  net::RemoteOptions remote;
  auto peers = net::parse_peer_list(o.peers);
  if (!peers) return peers.error();
  remote.peers = std::move(*peers);
  if (!o.hop_addresses.empty()) {
    auto hops = net::parse_peer_list(o.hop_addresses);
    if (!hops) return Error{"--hop-addresses: " + hops.error().message};
    remote.hop_addresses = std::move(*hops);
  }
  auto encoding = net::parse_hidden_encoding(o.hidden_format);
  if (!encoding) return encoding.error();
  remote.encoding = *encoding;
  auto topology = net::parse_topology(o.route);
  if (!topology) return topology.error();
  remote.topology = *topology;
  remote.data_dir = o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir;
  remote.call_timeout_s = o.call_timeout_s;
  remote.log = [](const std::string& line) { std::fprintf(stderr, "omni run: %s\n", line.c_str()); };
  return net::make_remote_pipeline(m, remote, n_ctx, pool);
}

int run(const RunOptions& o) {
  auto model = [&]() -> Result<std::unique_ptr<model::Model>> {
    if (o.store_dir.empty()) return model::Model::load(o.model_path);
    auto cid = store::Cid::parse(o.model_path);
    if (!cid) return cid.error();
    auto st = store::BlobStore::open(o.store_dir);
    if (!st) return st.error();
    return store::load_model(**st, *cid);
  }();
  if (!model) return fail(model.error().message);
  auto tokenizer = model::Tokenizer::from_metadata((*model)->file().metadata());
  if (!tokenizer) return fail(tokenizer.error().message);
  auto sampler = model::Sampler::create(o.sampling);
  if (!sampler) return fail(sampler.error().message);

  std::vector<std::string> stops = o.stops;
  auto tokens = prompt_tokens(o, **model, *tokenizer, stops);
  if (!tokens) return fail(tokens.error().message);
  if (tokens->empty()) return fail("the prompt is empty");

  const model::ModelConfig& cfg = (*model)->config();
  uint32_t n_ctx = o.ctx ? o.ctx : std::min<uint32_t>(cfg.n_ctx_train, 4096);
  if (tokens->size() + static_cast<size_t>(std::max(o.n_predict, 0)) > n_ctx)
    n_ctx = static_cast<uint32_t>(tokens->size() + std::max(o.n_predict, 0));
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  kernels::ThreadPool pool(threads);
  auto session = make_pipeline(o, **model, n_ctx, pool);
  if (!session) return fail(session.error().message);

  std::vector<float> logits;
  const auto t0 = Clock::now();
  constexpr size_t kBatch = 512;
  const size_t batch_size = std::min(kBatch, (*session)->max_batch());
  for (size_t i = 0; i < tokens->size(); i += batch_size) {
    std::span<const int32_t> batch(tokens->data() + i, std::min(batch_size, tokens->size() - i));
    if (auto r = (*session)->forward(batch, logits); !r) return fail(r.error().message);
  }
  for (int32_t t : *tokens) sampler->accept(t);
  const auto t1 = Clock::now();

  model::Detokenizer detok(*tokenizer);
  model::StopDetector stop(stops);
  int generated = 0;
  std::string finish = "length";
  for (; generated < o.n_predict; ++generated) {
    const int32_t id = sampler->sample(logits);
    if (o.json) {
      nlohmann::json line;
      line["id"] = id;
      auto top = model::top_logprobs(logits, std::max(o.top_logprobs, 1));
      // The chosen token's log-prob, from the same log-softmax as the top list.
      double lp = 0;
      {
        float max = logits[0];
        for (float v : logits) max = std::max(max, v);
        double sum = 0;
        for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
        lp = static_cast<double>(logits[id]) - max - std::log(sum);
      }
      line["logprob"] = lp;
      nlohmann::json top_json = nlohmann::json::array();
      for (int k = 0; k < o.top_logprobs && k < static_cast<int>(top.size()); ++k)
        top_json.push_back({top[k].first, top[k].second});
      line["top"] = std::move(top_json);
      line["text"] = tokenizer->token_to_piece(id);
      std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    if (!o.ignore_eos && tokenizer->is_end_of_generation(id)) {
      finish = "stop";
      break;
    }
    sampler->accept(id);
    if (!o.json) {
      auto piece = detok.feed(id);
      if (!piece) return fail(piece.error().message);
      std::string shown = stop.feed(*piece);
      std::fwrite(shown.data(), 1, shown.size(), stdout);
      std::fflush(stdout);
      if (stop.stopped()) {
        finish = "stop";
        ++generated;
        break;
      }
    }
    if (generated + 1 == o.n_predict) {
      ++generated;
      break;
    }
    const int32_t next[1] = {id};
    if (auto r = (*session)->forward(next, logits); !r) return fail(r.error().message);
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
               (*session)->summary().c_str());
  return 0;
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text with a local model");
  cmd->add_option("-m,--model", o->model_path, "GGUF model file (a model CID with --store)")->required();
  cmd->add_option("--store", o->store_dir, "Load the model CID from the shards in this store");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("-c,--ctx-size", o->ctx, "Context length (default: min(training context, 4096))");
  cmd->add_option("--temp", o->sampling.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the penalties look back")->capture_default_str();
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "OpenAI frequency penalty");
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "OpenAI presence penalty");
  cmd->add_option("--seed", o->sampling.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--chat-template", o->chat_template, "Chat template by name (chatml, llama2, llama3, ...)");
  cmd->add_option("--system", o->system, "System message (with --chat)");
  cmd->add_option("--stop", o->stops, "Stop string (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-generation tokens");
  cmd->add_option("--top-logprobs", o->top_logprobs, "With --json: how many top log-probs per token");
  cmd->add_flag("--json", o->json, "One JSON object per generated token: id, logprob, top");
  cmd->add_option("--peers", o->peers, "Run the blocks on these nodes: [ID@]HOST:PORT,... (see omni node)");
  cmd->add_option("--hidden-format", o->hidden_format, "With --peers: hidden states as f16, f32 or q8")
      ->capture_default_str();
  cmd->add_option("--route", o->route,
                  "With --peers: ring (nodes forward, the last answers the client), chain (the answer retraces "
                  "the chain) or direct (client calls each)")
      ->capture_default_str();
  cmd->add_option("--hop-addresses", o->hop_addresses,
                  "With --peers: ID@HOST:PORT,... where the nodes reach each other (default: the --peers addresses)");
  cmd->add_option("--data-dir", o->data_dir, "With --peers: directory of this client's identity key (~/.omni)");
  cmd->add_option("--timeout", o->call_timeout_s, "With --peers: seconds a node may take per call")
      ->capture_default_str();
  cmd->add_flag("--lan", o->lan, "Run the blocks on the swarm found on the LAN by multicast (OpenDHT peer discovery)");
  cmd->add_option("--bootstrap", o->bootstrap, "Run the blocks on the swarm found through these DHT nodes, HOST:PORT")
      ->delimiter(',');
  cmd->add_option("--stall-timeout", o->stall_timeout_s,
                  "With --bootstrap: seconds a node of the chain may answer no heartbeat while a call waits "
                  "before it is routed around (0: only --timeout)")
      ->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run(*o); });
}

}  // namespace omni::cli
