// omni: the OmniNode command-line tool.
//
// Exit codes (cli_options.h): 0 success; 1 the command ran and failed (its message on stderr);
// 2 the command line is wrong (a one-line message naming the flag, and where to read the usage).
#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli_options.h"
#include "commands.h"
#include "config_file.h"

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

// Every command, on a new app (main's, and the fresh ones `omni config check` fills).
void add_commands(CLI::App& app, int& exit_code);

std::unique_ptr<CLI::App> fresh_app() {
  auto app = std::make_unique<CLI::App>("omni", "omni");
  static int unused_exit_code = 0;
  add_commands(*app, unused_exit_code);
  return app;
}

void add_commands(CLI::App& app, int& exit_code) {
  app.require_subcommand(1);
  app.set_version_flag("--version", omni::cli::version_text());
  register_help(app);
  omni::cli::register_inspect(app, exit_code);
  omni::cli::register_synth(app, exit_code);
  omni::cli::register_run(app, exit_code);
  omni::cli::register_template(app, exit_code);
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
  omni::cli::register_update(app, exit_code);
  omni::cli::register_credits(app, exit_code);
  omni::cli::register_doctor(app, exit_code);
  omni::cli::register_config(app, exit_code, fresh_app);
}

// The arguments with --config FILE (or --config=FILE) moved to the front, where omni's own option
// takes it: users write it after the command (omni node --config FILE). `command` is the first
// word that is not an option; a command with a --config of its own (omni config check) keeps it.
std::vector<std::string> hoist_config(const std::vector<std::string>& args, std::string& command) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      ++i;
    } else if (args[i].rfind("--config=", 0) != 0 && !args[i].empty() && args[i][0] != '-') {
      command = args[i];
      break;
    }
  }
  if (command == "config") return args;
  std::vector<std::string> front, rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      rest.insert(rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (args[i] == "--config" && i + 1 < args.size()) {
      front = {args[i], args[i + 1]};
      ++i;
    } else if (args[i].rfind("--config=", 0) == 0) {
      front = {args[i]};
    } else {
      rest.push_back(args[i]);
    }
  }
  front.insert(front.end(), rest.begin(), rest.end());
  return front;
}

// The config file this run reads: --config's, else the default file where it exists; "" for none.
std::string config_file_of(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "--config") return args.size() > 1 ? args[1] : "";
  if (!args.empty() && args[0].rfind("--config=", 0) == 0) return args[0].substr(9);
  struct stat info;
  return ::stat(omni::cli::kDefaultConfigFile, &info) == 0 ? omni::cli::kDefaultConfigFile : "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"omni: run open-weight LLMs across a network of ordinary machines", "omni"};
  int exit_code = omni::cli::kExitOk;
  std::string command;
  std::vector<std::string> args = hoist_config(std::vector<std::string>(argv + 1, argv + argc), command);
  if (command != "config") {
    const std::string file = config_file_of(args);
    if (!file.empty()) {
      auto checked = omni::cli::check_config(file, *fresh_app());
      if (!checked) {
        std::fprintf(stderr, "omni: %s\n", checked.error().message.c_str());
        return omni::cli::kExitUsage;
      }
      for (const auto& problem : checked->problems)
        std::fprintf(stderr, "omni: %s\n", omni::cli::config_problem_text(file, problem).c_str());
      if (!checked->problems.empty()) {
        std::fprintf(stderr, "Run 'omni --help' for usage; 'omni config check --config %s' checks the file.\n", file.c_str());
        return omni::cli::kExitUsage;
      }
    }
    app.set_config("--config", omni::cli::kDefaultConfigFile,
                   "TOML file of flags, a [section] per command; flags given on the command line win")
        ->type_name("FILE")
        ->capture_default_str();
    app.allow_config_extras(CLI::config_extras_mode::error);
  }
  add_commands(app, exit_code);
  // CLI11 would call an unknown first word an extra argument after a missing command.
  if (!command.empty() && !is_command(app, command)) {
    std::fprintf(stderr, "omni: no command named '%s'\nRun 'omni --help' for usage.\n", command.c_str());
    return omni::cli::kExitUsage;
  }
  std::vector<char*> hoisted{argv[0]};
  for (auto& arg : args) hoisted.push_back(arg.data());
  try {
    app.parse(static_cast<int>(hoisted.size()), hoisted.data());
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
