// omni synth: writes a synthetic GGUF model of a real model's shape (see model/synth.h).
//
//   omni synth --shape tinyllama-1.1b|custom:arch=...,layers=... --type q8_0|q4_k_m|... --seed 1 [--vocab FILE [--vocab-size N]] [--layers N] [--sparse] OUT.gguf
//   omni synth --list-shapes
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>

#include "cli_options.h"
#include "commands.h"
#include "model/shapes.h"
#include "model/synth.h"

namespace omni::cli {
namespace {

struct SynthArgs {
  std::string shape;
  std::string type = "q8_0";
  uint64_t seed = 1;
  std::string vocab;
  uint32_t vocab_size = 0;
  uint32_t layers = 0;
  bool sparse = false;
  int threads = 0;
  bool list = false;
  std::string out;
};

void list_shapes() {
  std::printf("%-16s %-6s %6s %6s %9s %6s %8s %8s %10s %9s  %s\n", "shape", "arch", "layers", "dim", "heads/kv", "ffn",
              "vocab", "context", "rope base", "params", "notes");
  for (const auto& s : model::shapes()) {
    const uint64_t params = model::parameter_count(model::tensor_layout(s));
    std::string notes;
    if (s.tied_embeddings) notes += "tied embeddings; ";
    if (s.qkv_bias) notes += "q/k/v bias; ";
    if (s.llama3_rope) notes += "llama3 rope scaling; ";
    if (!notes.empty()) notes.resize(notes.size() - 2);
    char heads[32];
    std::snprintf(heads, sizeof heads, "%u/%u", s.n_head, s.n_head_kv);
    std::printf("%-16s %-6s %6u %6u %9s %6u %8u %8u %10g %8.2fB  %s\n", s.name.c_str(), s.arch.c_str(), s.n_layer,
                s.n_embd, heads, s.n_ff, s.n_vocab, s.n_ctx, static_cast<double>(s.rope_freq_base),
                static_cast<double>(params) / 1e9, notes.c_str());
  }
}

int run(const SynthArgs& a) {
  if (a.list) {
    list_shapes();
    return 0;
  }
  model::SynthOptions o;
  o.shape = a.shape;
  o.mix = *model::mix_from_name(a.type);  // checked while parsing
  o.seed = a.seed;
  o.vocab_path = a.vocab;
  o.vocab_size = a.vocab_size;
  o.n_layers = a.layers;
  o.sparse = a.sparse;
  o.threads = static_cast<unsigned>(a.threads);
  o.out_path = a.out;
  auto r = model::synthesize(o);
  if (!r) return fail("synth", r.error());
  std::string vocab_source = r->vocab_from_file ? a.vocab : "generated SPM";
  if (r->vocab_grown_from) vocab_source += ", grown from " + std::to_string(r->vocab_grown_from);
  std::printf("%s: %s, %s, %u layer%s, %" PRIu64 " params, %" PRIu64 " tensors, vocab %u (%s), %" PRIu64
              " bytes%s, %.2f s on %u thread%s\n",
              r->path.c_str(), r->shape.c_str(), model::mix_name(r->mix).c_str(), r->n_layer,
              r->n_layer == 1 ? "" : "s", r->n_params,
              r->n_tensors, r->n_vocab, vocab_source.c_str(), r->file_bytes,
              a.sparse ? " (sparse)" : "", r->seconds, r->threads, r->threads == 1 ? "" : "s");
  return 0;
}

}  // namespace

void register_synth(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a synthetic GGUF model of a real model's shape");
  cmd->add_option("--shape", args->shape, "Model shape (see --list-shapes), or custom:arch=A,layers=N,embd=N,heads=N,ff=N,vocab=N[,...] (model/shapes.h)");
  cmd->add_option("--type", args->type, "Type mix of the 2-D weights, per tensor as llama-quantize chooses: f32 f16 bf16 q8_0 q4_0 q4_1 "
                  "q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k")
      ->capture_default_str()
      ->check(mix_name("synthesize"));
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str()->check(count_in(0));
  cmd->add_option("--vocab", args->vocab, "GGUF whose tokenizer.* keys to copy (sets the vocabulary size)");
  cmd->add_option("--vocab-size", args->vocab_size,
                  "Grow the --vocab vocabulary to N tokens (at most 1048576): each added token joins two of its "
                  "ordinary tokens, as long as one of its latest ones, seeded by --seed, with the BPE merge rule "
                  "or a lowest score; the embedding and output matrices get N rows")
      ->check(count_in(1, UINT32_MAX))
      ->needs("--vocab");
  cmd->add_option("--layers", args->layers, "Override the number of blocks (0: the shape's)")
      ->check(count_in(0, UINT32_MAX));
  add_threads(cmd, args->threads);
  cmd->add_flag("--sparse", args->sparse, "Write headers only; tensor data are holes (reads as zeros)");
  cmd->add_flag("--list-shapes", args->list, "List the known shapes and exit");
  cmd->add_option("out", args->out, "Output GGUF file");
  cmd->callback([args, &exit_code] {
    if (!args->list && (args->shape.empty() || args->out.empty()))
      throw CLI::ValidationError("--shape and an output file are required (or --list-shapes)");
    exit_code = run(*args);
  });
}

}  // namespace omni::cli
