// omni: the OmniNode command-line tool.
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"omni: run open-weight LLMs across a network of ordinary machines"};
  app.require_subcommand(1);
  int exit_code = 0;
  omni::cli::register_inspect(app, exit_code);
  omni::cli::register_synth(app, exit_code);
  omni::cli::register_run(app, exit_code);
  omni::cli::register_perplexity(app, exit_code);
  omni::cli::register_quantize(app, exit_code);
  omni::cli::register_shard(app, exit_code);
  omni::cli::register_fetch(app, exit_code);
  omni::cli::register_node(app, exit_code);
  omni::cli::register_swarm(app, exit_code);
  omni::cli::register_bench(app, exit_code);
  omni::cli::register_gateway(app, exit_code);
  omni::cli::register_relay(app, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
