// omni quantize IN OUT MIX: converts an F32/F16/BF16 model's matrices to a llama.cpp quantization mix
// (q8_0, q4_0, ..., q4_k_m, q6_k), choosing each tensor's type as llama-quantize does.
#include <chrono>
#include <cstdio>

#include "cli_options.h"
#include "commands.h"
#include "model/quantize_model.h"

namespace omni::cli {

void register_quantize(CLI::App& app, int& exit_code) {
  struct Options {
    std::string input, output, type, sha256;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("quantize", "Convert a model's weight matrices to another format");
  cmd->add_option("input", o->input, "F32/F16/BF16 GGUF model: a file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV]")
      ->required();
  add_model_sha256(cmd, o->sha256);
  cmd->add_option("output", o->output, "Output GGUF file")->required();
  cmd->add_option("type", o->type, "Mix: " + model::mix_names_text())->required()->check(mix_name("quantize to"));
  cmd->callback([o, &exit_code] {
    const auto mix = model::mix_from_name(o->type);  // checked while parsing
    if (auto r = resolve_model(o->input, o->sha256, "", "quantize"); !r) {
      exit_code = fail("quantize", r.error());
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = model::quantize_model(o->input, o->output, *mix);
    if (!r) {
      exit_code = fail("quantize", r.error());
      return;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %llu tensors, %llu matrices as %s, %llu in a fallback type (row length), %.1f MiB -> %.1f MiB, %.1f s\n",
                o->output.c_str(), static_cast<unsigned long long>(r->tensors),
                static_cast<unsigned long long>(r->converted), model::mix_name(*mix).c_str(),
                static_cast<unsigned long long>(r->fallbacks), r->input_bytes / 1048576.0,
                r->output_bytes / 1048576.0, s);
  });
}

}  // namespace omni::cli
