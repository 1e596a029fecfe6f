// omni perplexity: perplexity of a model on a text file, computed as llama.cpp's tool does.
#include <chrono>
#include <cstdio>
#include <fstream>

#include "cli_options.h"
#include "commands.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"

namespace omni::cli {

void register_perplexity(CLI::App& app, int& exit_code) {
  struct Options {
    ModelSource model;
    std::string file;
    uint32_t ctx = 512;
    uint32_t chunks = 0;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text file");
  add_model_source(cmd, o->model, /*with_store=*/true);
  cmd->add_option("-f,--file", o->file, "Text file")->required();
  cmd->add_option("-c,--ctx-size", o->ctx, "Tokens per chunk")->capture_default_str()->check(count_in(2, UINT32_MAX));
  cmd->add_option("--chunks", o->chunks, "Number of chunks (default: as many as fit)")->check(count_in(0, UINT32_MAX));
  add_threads(cmd, o->threads);
  cmd->callback([o, &exit_code] {
    auto fail = [&](const Error& e) { exit_code = cli::fail("perplexity", e); };
    std::ifstream in(o->file, std::ios::binary);
    if (!in) return fail(Error{ErrorCode::NotFound, o->file + ": cannot open"});
    std::string text((std::istreambuf_iterator<char>(in)), {});
    if (auto r = resolve_model(o->model.model, o->model.sha256, o->model.store_dir, "perplexity"); !r)
      return fail(r.error());
    auto model = load_model(o->model);
    if (!model) return fail(model.error());
    auto tok = model::Tokenizer::from_metadata((*model)->file().metadata());
    if (!tok) return fail(tok.error());
    auto tokens = tok->encode(text, /*add_special=*/true, /*parse_special=*/false);
    std::optional<int32_t> bos;
    if (tok->add_bos()) bos = tok->bos();
    kernels::ThreadPool pool(threads_to_use(o->threads));
    const auto t0 = std::chrono::steady_clock::now();
    auto r = model::perplexity(**model, tokens, o->ctx, o->chunks, bos, pool);
    if (!r) return fail(r.error());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%zu tokens, %u chunks of %u, %llu scored, %.2f s\n", tokens.size(), r->chunks, o->ctx,
                static_cast<unsigned long long>(r->scored_tokens), s);
    std::printf("PPL = %.4f\n", r->perplexity);
  });
}

}  // namespace omni::cli
