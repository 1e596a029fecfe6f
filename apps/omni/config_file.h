// omni's config file: /etc/omni/omni.toml, or the file named by --config. One section per command
// ([node], [gateway], [relay], [run], ...; a nested command as [swarm.status]); each key is one of
// that command's long flags without its dashes, its value written as in TOML:
//
//   [node]
//   model = "/srv/models/llama.gguf"
//   threads = 4
//   share = true
//   listen = "0.0.0.0:7000"
//
// CLI11 reads the file (App::set_config) after the command line and sets only the options the
// command line left out, so a flag always wins over the file. The keys are the commands' own
// options, looked up when the file is read: a flag added to a command is settable in the file with
// no change here.
//
// check_config reads the file item by item the way CLI11 reads it and tries each value on the
// option it names, so each problem (an unknown section or key, a key set twice, a flag that cannot
// come from a file, a value its flag refuses) comes with its line; CLI11's own errors name none.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "base/result.h"

namespace omni::cli {

inline constexpr const char* kDefaultConfigFile = "/etc/omni/omni.toml";

struct ConfigProblem {
  int line = 0;  // 1-based line of the file the problem is on
  std::string message;
};

struct ConfigCheck {
  std::vector<ConfigProblem> problems;  // empty: CLI11 will read the file without an error
  size_t settings = 0;                  // keys set in the file
};

// Checks `path` against the commands of `app`, which must be a freshly built omni app used for
// nothing else: the check fills its options as a parse would. An unreadable file is NotFound or
// PermissionDenied; what is wrong inside the file is in problems.
Result<ConfigCheck> check_config(const std::string& path, CLI::App& app);

// "FILE:LINE: message", one problem.
std::string config_problem_text(const std::string& path, const ConfigProblem& problem);

}  // namespace omni::cli
