// omni quantize IN OUT TYPE: converts an F32/F16/BF16 model's matrices to another block format.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "model/quantize_model.h"

namespace omni::cli {

void register_quantize(CLI::App& app, int& exit_code) {
  struct Options {
    std::string input, output, type;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("quantize", "Convert a model's weight matrices to another format");
  cmd->add_option("input", o->input, "F32/F16/BF16 GGUF model")->required();
  cmd->add_option("output", o->output, "Output GGUF file")->required();
  cmd->add_option("type", o->type, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1")->required();
  cmd->callback([o, &exit_code] {
    auto type = gguf::tensor_type_from_name(o->type);
    if (!type) {
      std::fprintf(stderr, "omni quantize: unknown type '%s'\n", o->type.c_str());
      exit_code = 1;
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = model::quantize_model(o->input, o->output, *type);
    if (!r) {
      std::fprintf(stderr, "omni quantize: %s\n", r.error().message.c_str());
      exit_code = 1;
      return;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %llu tensors, %llu matrices as %s, %llu as f16 (row length), %.1f MiB -> %.1f MiB, %.1f s\n",
                o->output.c_str(), static_cast<unsigned long long>(r->tensors),
                static_cast<unsigned long long>(r->converted), o->type.c_str(),
                static_cast<unsigned long long>(r->fallbacks), r->input_bytes / 1048576.0,
                r->output_bytes / 1048576.0, s);
  });
}

}  // namespace omni::cli
