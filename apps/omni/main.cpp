// omni: the OmniNode command-line tool.
//
// Exit codes (cli_options.h): 0 success; 1 the command ran and failed (its message on stderr);
// 2 the command line is wrong (a one-line message naming the flag, and where to read the usage).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "cli_options.h"
#include "commands.h"

namespace {

bool is_command(const CLI::App& app, const std::string& name) {
  return !app.get_subcommands([&](const CLI::App* sub) { return sub->get_name() == name; }).empty();
}

// omni help [COMMAND]: the usage of omni or of one command, on stdout.
void register_help(CLI::App& app) {
  auto* cmd = app.add_subcommand("help", "Show the usage of omni or of one command");
  auto command = std::make_shared<std::string>();
  cmd->add_option("command", *command, "The command to describe")
      ->check(CLI::Validator(
          [&app](std::string& name) -> std::string {
            return is_command(app, name) ? "" : "no command named '" + name + "' (see omni help)";
          },
          "COMMAND"));
  cmd->callback([&app, command] {
    // Not App::help(): on an app with a parsed subcommand (this one) it describes that subcommand.
    const CLI::App* shown = command->empty() || *command == "help" ? &app : app.get_subcommand(*command);
    std::cout << app.get_formatter()->make_help(shown, shown == &app ? "omni" : "omni " + shown->get_name(), CLI::AppFormatMode::Normal);
  });
}

// The subcommand chain the user got to ("run", "swarm status"), for messages and the --help hint.
std::string command_path(const CLI::App& app) {
  std::string path;
  for (const CLI::App* at = &app; !at->get_subcommands().empty();) {
    at = at->get_subcommands().front();
    path += (path.empty() ? "" : " ") + at->get_name();
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"omni: run open-weight LLMs across a network of ordinary machines", "omni"};
  app.require_subcommand(1);
  app.set_version_flag("--version", omni::cli::version_text());
  int exit_code = omni::cli::kExitOk;
  register_help(app);
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
  omni::cli::register_up(app, exit_code);
  omni::cli::register_credits(app, exit_code);
  // CLI11 would call an unknown first word an extra argument after a missing command.
  if (argc > 1 && argv[1][0] != '-' && !is_command(app, argv[1])) {
    std::fprintf(stderr, "omni: no command named '%s'\nRun 'omni --help' for usage.\n", argv[1]);
    return omni::cli::kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version: printed on stdout, exit 0
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string command = command_path(app);
    const std::string where = command.empty() ? "omni" : "omni " + command;
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", where.c_str(), e.what(), where.c_str());
    return omni::cli::kExitUsage;
  } catch (const std::exception& e) {  // a bug below the command layer; still a message, not an abort
    std::fprintf(stderr, "omni: internal error: %s\n", e.what());
    return omni::cli::kExitRuntimeError;
  }
  return exit_code;
}
