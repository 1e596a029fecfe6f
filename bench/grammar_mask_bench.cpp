// The cost of grammar-constrained sampling: generation tokens/s with a JSON Schema mask against the
// same generation without one, on one model, in one run, and their ratio.
//
// Usage: grammar_mask_bench MODEL.gguf [TOKENS_PER_RUN=64] [RUNS=6] [THREADS=2]
// Make a model with a large real vocabulary (deepseek-llm's 102,400 tokens) with, e.g.:
//   omni synth --shape qwen2.5-0.5b --layers 4 --vocab shared/vocab/ggml-vocab-deepseek-llm.gguf m.gguf
// and one with that vocabulary grown to Qwen2's 151,936 tokens (no such file is at hand; see
// model/synth.h grow_vocab for what the added tokens are) with (one command):
//   omni synth --shape qwen2.5-0.5b --layers 4 --vocab-size 151936
//       --vocab shared/vocab/ggml-vocab-deepseek-llm.gguf m151k.gguf
// Each run is a fresh session: the prompt, then TOKENS_PER_RUN sampled tokens (temperature 1, a
// run's own seed). Constrained runs generate under the schema until the value is complete or the
// budget ends, and start again; only generated tokens count. The first constrained run finds the
// mask cache empty (cold: the cost a new schema pays); later runs share it (warm), as requests
// with the same schema do in the gateway. Runs alternate between the modes so drift in the
// machine's speed hits both alike.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/thread_pool.h"
#include "model/json_schema_grammar.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/token_constraint.h"
#include "model/tokenizer.h"

using namespace omni;
using namespace omni::model;

namespace {

const char* kSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":40},"age":{"type":"integer"},"email":{"type":"string","maxLength":60},
  "tags":{"type":"array","items":{"type":"string","maxLength":20},"maxItems":8},
  "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},"zip":{"type":"string","maxLength":10}},"required":["city"]},
  "active":{"type":"boolean"},"score":{"type":"number"}},
  "required":["name","age","tags","address"],"additionalProperties":false})";

struct Timing {
  size_t tokens = 0;
  double seconds = 0;
  double sampling = 0;  // of which choosing tokens (with the mask: drawing, masking, advancing the grammar)
  double rate() const { return seconds > 0 ? tokens / seconds : 0; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [TOKENS_PER_RUN=64] [RUNS=6] [THREADS=2]\n", argv[0]);
    return 2;
  }
  const size_t per_run = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
  const int runs = argc > 3 ? std::atoi(argv[3]) : 6;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
  auto model = Model::load(argv[1]);
  if (!model) {
    std::fprintf(stderr, "%s\n", model.error().message.c_str());
    return 1;
  }
  auto tokenizer = Tokenizer::from_metadata((*model)->file().metadata());
  if (!tokenizer) {
    std::fprintf(stderr, "%s\n", tokenizer.error().message.c_str());
    return 1;
  }
  kernels::ThreadPool pool(threads);
  const auto built0 = std::chrono::steady_clock::now();
  auto vocabulary = std::make_shared<const TokenVocabulary>(*tokenizer);
  const double trie_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - built0).count();
  auto grammar = json_schema_grammar(nlohmann::ordered_json::parse(kSchema));
  if (!grammar) {
    std::fprintf(stderr, "%s\n", grammar.error().message.c_str());
    return 1;
  }
  auto constrained = std::make_shared<const ConstrainedGrammar>(std::move(*grammar), vocabulary);
  const std::vector<int32_t> prompt = tokenizer->encode("Describe a person as JSON:", true, false);
  std::printf("vocabulary %zu tokens (trie built in %.3f s, %zu nodes), %zu tokens a run, %d runs a mode\n",
              vocabulary->size(), trie_s, vocabulary->nodes().size(), per_run, runs);

  std::vector<float> logits, scratch;
  auto run = [&](bool with_mask, uint64_t seed) -> Timing {
    SamplingParams params;
    params.temperature = 1.0f, params.top_k = 0, params.top_p = 1.0f, params.min_p = 0.0f, params.seed = seed;
    Sampler sampler = *Sampler::create(params);
    Timing t;
    while (t.tokens < per_run) {
      auto session = Session::create(**model, 0, (*model)->config().n_layer, static_cast<uint32_t>(prompt.size() + per_run + 1));
      if (!session || !(*session)->forward(prompt, {}, Output::LastLogits, logits, pool)) std::abort();
      std::optional<TokenConstraint> constraint;
      if (with_mask) constraint.emplace(constrained);
      const auto start = std::chrono::steady_clock::now();
      while (t.tokens < per_run) {
        const auto pick = std::chrono::steady_clock::now();
        TokenId id;
        if (constraint) {
          auto drawn = constraint->sample(sampler, logits, scratch);
          if (!drawn) std::abort();
          id = *drawn;
          constraint->accept(id);
        } else {
          id = sampler.sample(logits);
        }
        t.sampling += std::chrono::duration<double>(std::chrono::steady_clock::now() - pick).count();
        ++t.tokens;
        if ((constraint && constraint->finished()) || tokenizer->is_end_of_generation(id)) break;
        const int32_t step = id;
        if (!(*session)->forward({&step, 1}, {}, Output::LastLogits, logits, pool)) std::abort();
      }
      t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return t;
  };

  Timing plain, cold, warm;
  for (int r = 0; r < runs; ++r) {
    const Timing p = run(false, 1000 + r);
    const Timing m = run(true, 2000 + r);
    plain.tokens += p.tokens, plain.seconds += p.seconds, plain.sampling += p.sampling;
    Timing& into = r == 0 ? cold : warm;
    into.tokens += m.tokens, into.seconds += m.seconds, into.sampling += m.sampling;
    std::printf("run %d: plain %.2f tok/s, masked %.2f tok/s%s\n", r, p.rate(), m.rate(), r == 0 ? " (cold cache)" : "");
  }
  const auto stats = constrained->stats();
  std::printf("plain:  %.2f tok/s\n", plain.rate());
  std::printf("masked, cold cache (first run): %.2f tok/s, ratio %.3f\n", cold.rate(), cold.rate() / plain.rate());
  if (runs > 1)
    std::printf("masked, warm cache (later runs): %.2f tok/s, ratio %.3f (cost %.1f %%)\n", warm.rate(),
                warm.rate() / plain.rate(), 100.0 * (1.0 - warm.rate() / plain.rate()));
  std::printf("mask cache: %zu hits, %zu misses\n", stats.hits, stats.misses);
  // Wall-clock rates swing with the machine's load; the time spent choosing tokens does not depend
  // on the forward pass, so its excess over plain sampling, against a plain token's whole time, is
  // the steadier figure of what the mask costs.
  const double plain_token = plain.seconds / plain.tokens, plain_pick = plain.sampling / plain.tokens;
  auto excess = [&](const Timing& t) { return t.sampling / t.tokens - plain_pick; };
  std::printf("choosing a token: plain %.3f ms, masked cold %.3f ms, masked warm %.3f ms; a plain token %.2f ms\n",
              1e3 * plain_pick, 1e3 * cold.sampling / cold.tokens, runs > 1 ? 1e3 * warm.sampling / warm.tokens : 0.0,
              1e3 * plain_token);
  std::printf("mask cost per token against a plain token's time: cold %.1f %%, warm %.1f %%\n",
              100.0 * excess(cold) / plain_token, runs > 1 ? 100.0 * excess(warm) / plain_token : 0.0);
  return 0;
}
