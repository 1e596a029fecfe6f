// The `omni` subcommands. Each register_* adds one subcommand to the app; its callback runs the
// command and sets the process exit code through `exit_code` (0 on success, 1 on a reported error).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace omni::cli {

void register_inspect(CLI::App& app, int& exit_code);
void register_synth(CLI::App& app, int& exit_code);
void register_run(CLI::App& app, int& exit_code);
void register_perplexity(CLI::App& app, int& exit_code);
void register_quantize(CLI::App& app, int& exit_code);
void register_shard(CLI::App& app, int& exit_code);
void register_fetch(CLI::App& app, int& exit_code);
void register_node(CLI::App& app, int& exit_code);
void register_swarm(CLI::App& app, int& exit_code);  // omni swarm status
void register_bench(CLI::App& app, int& exit_code);
void register_gateway(CLI::App& app, int& exit_code);
void register_relay(CLI::App& app, int& exit_code);   // omni relay (nodes behind NAT)
void register_up(CLI::App& app, int& exit_code);      // omni up: a whole swarm on this machine
void register_template(CLI::App& app, int& exit_code);  // omni template: a chat template's prompt
void register_update(CLI::App& app, int& exit_code);  // omni update: signed releases
// omni config check: `fresh_app` builds a new omni app with every command, for the check to fill.
void register_config(CLI::App& app, int& exit_code, std::function<std::unique_ptr<CLI::App>()> fresh_app);
void register_credits(CLI::App& app, int& exit_code);  // omni credits: a node's ledger
void register_doctor(CLI::App& app, int& exit_code);   // omni doctor: what this machine can give

}  // namespace omni::cli
