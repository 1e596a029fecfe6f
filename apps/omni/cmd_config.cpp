// omni config check [--config FILE]: reads a config file (config_file.h) the way every command
// reads it and prints each problem as FILE:LINE: message; exit 0 when there is none, 1 otherwise.
#include <cstdio>

#include "cli_options.h"
#include "commands.h"
#include "config_file.h"

namespace omni::cli {

void register_config(CLI::App& app, int& exit_code, std::function<std::unique_ptr<CLI::App>()> fresh_app) {
  auto* cmd = app.add_subcommand("config", "Check omni's config file");
  cmd->require_subcommand(1);
  auto* check = cmd->add_subcommand("check", "Report each problem of a config file with its line");
  auto path = std::make_shared<std::string>(kDefaultConfigFile);
  check->add_option("--config", *path, "The file to check")->capture_default_str()->configurable(false);
  check->callback([&exit_code, path, fresh_app] {
    auto checked = check_config(*path, *fresh_app());
    if (!checked) {
      exit_code = fail("config check", checked.error());
      return;
    }
    for (const auto& problem : checked->problems)
      std::fprintf(stderr, "%s\n", config_problem_text(*path, problem).c_str());
    if (!checked->problems.empty()) {
      std::fprintf(stderr, "omni config check: %zu problem%s in %s\n", checked->problems.size(),
                   checked->problems.size() == 1 ? "" : "s", path->c_str());
      exit_code = kExitRuntimeError;
      return;
    }
    std::printf("omni config check: %s is valid (%zu setting%s)\n", path->c_str(), checked->settings,
                checked->settings == 1 ? "" : "s");
  });
}

}  // namespace omni::cli
