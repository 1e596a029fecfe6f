#include "config_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace omni::cli {
namespace {

std::string trimmed(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// One setting as it stands in the file: the line it starts on, the section it is in ("" before
// the first section) and its text, more than one line for an array that CLI11 reads on.
struct RawSetting {
  int line = 0;
  std::string section;
  std::string text;
};

// Splits the file the way CLI11's ConfigBase::from_config walks it (lines under 3 characters
// skipped, '#' and ';' comments, "[section]" and "[[section]]" headers, an array value that opens
// with '[' read on until a line closes it), so each setting can be handed to CLI11 alone.
void split_settings(std::istream& in, std::vector<RawSetting>& settings, std::vector<RawSetting>& headers,
                    std::vector<ConfigProblem>& problems) {
  std::string section;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string t = trimmed(line);
    if (t.empty() || t.front() == '#' || t.front() == ';') continue;
    if (t.size() < 3) {
      problems.push_back({number, "'" + t + "' is not a setting (KEY = VALUE) or a [section]"});
      continue;
    }
    if (t.front() == '[' && t.back() == ']') {
      section = t.substr(1, t.size() - 2);
      headers.push_back({number, section, t});
      continue;
    }
    RawSetting setting{number, section, t};
    if (auto eq = t.find('='); eq != std::string::npos) {
      std::string value = trimmed(t.substr(eq + 1));
      if (auto comment = value.find('#'); comment != std::string::npos) value = trimmed(value.substr(0, comment));
      if (value.size() > 1 && value.front() == '[') {
        for (std::string more; value.back() != ']' && std::getline(in, more); ++number) {
          setting.text += "\n" + more;
          value += trimmed(more);
        }
      }
    }
    settings.push_back(std::move(setting));
  }
}

// What CLI11 makes of one setting (its header first, so the section applies): the items that set
// something, without the section open/close markers.
std::vector<CLI::ConfigItem> items_of(CLI::App& app, const std::string& section, const std::string& text) {
  std::istringstream one((section.empty() ? "" : "[" + section + "]\n") + text + "\n");
  std::vector<CLI::ConfigItem> items;
  for (auto& item : app.get_config_formatter()->from_config(one))
    if (item.name != "++" && item.name != "--") items.push_back(std::move(item));
  return items;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string text;
  for (const auto& part : parts) text += (text.empty() ? "" : ".") + part;
  return text;
}

std::string command_names(CLI::App& app) {
  std::string names;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() != "help") names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

// The command a section's path names, or nullptr; `unknown` is then the first name not found.
CLI::App* command_at(CLI::App& app, const std::vector<std::string>& path, std::string& unknown) {
  CLI::App* at = &app;
  for (const auto& name : path) {
    auto found = at->get_subcommands([&name](CLI::App* sub) { return sub->check_name(name); });
    if (found.empty()) {
      unknown = name;
      return nullptr;
    }
    at = found.front();
  }
  return at;
}

// The option a key names, looked up as CLI11's App::_parse_single_config does.
CLI::Option* option_named(CLI::App& command, const std::string& key) {
  CLI::Option* option = command.get_option_no_throw("--" + key);
  if (!option && key.size() == 1) option = command.get_option_no_throw("-" + key);
  if (!option) option = command.get_option_no_throw(key);
  return option;
}

// Sets the value on the option as a parse from the file would; an error says why the flag refuses it.
std::string try_value(CLI::App& app, CLI::Option& option, const CLI::ConfigItem& item) {
  try {
    if (option.get_expected_min() == 0)
      option.add_result(option.get_flag_value(item.name, app.get_config_formatter()->to_flag(item)));
    else
      option.add_result(item.inputs);
    option.run_callback();
    return "";
  } catch (const CLI::Error& e) {
    return e.what();
  }
}

}  // namespace

Result<ConfigCheck> check_config(const std::string& path, CLI::App& app) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    return Error(err == EACCES ? ErrorCode::PermissionDenied : ErrorCode::NotFound,
                 "cannot read config file " + path + ": " + std::strerror(err));
  }
  ConfigCheck check;
  std::vector<RawSetting> settings;
  std::vector<RawSetting> headers;
  split_settings(in, settings, headers, check.problems);

  std::map<std::string, bool> known_section;  // by the header's text, checked once at its line
  for (const auto& header : headers) {
    std::istringstream header_only(header.text + "\n");
    auto markers = app.get_config_formatter()->from_config(header_only);
    std::vector<std::string> path_names = markers.empty() ? std::vector<std::string>{} : markers.back().parents;
    std::string unknown;
    const bool known = command_at(app, path_names, unknown) != nullptr;
    if (!known)
      check.problems.push_back({header.line, "unknown section [" + header.section + "]: '" + unknown +
                                                 "' is no command (sections are commands: " + command_names(app) + ")"});
    known_section.emplace(header.section, known);
  }

  std::map<const CLI::Option*, int> set_on_line;
  for (const auto& setting : settings) {
    if (!setting.section.empty() && !known_section[setting.section]) continue;  // reported at its header
    for (const auto& item : items_of(app, setting.section, setting.text)) {
      std::string unknown;
      CLI::App* command = command_at(app, item.parents, unknown);
      if (!command) {
        check.problems.push_back({setting.line, "'" + item.fullname() + "': '" + unknown + "' is no command"});
        continue;
      }
      const std::string where = item.parents.empty() ? "outside any section" : "in [" + joined(item.parents) + "]";
      if (item.parents.empty()) {
        check.problems.push_back({setting.line, "'" + item.name + "' is " + where +
                                                    ": put it under the command it is for, e.g. [node]"});
        continue;
      }
      CLI::Option* option = option_named(*command, item.name);
      if (!option) {
        std::string hint;
        std::string dashed = item.name;
        for (char& c : dashed)
          if (c == '_') c = '-';
        if (dashed != item.name && option_named(*command, dashed)) hint = " (did you mean '" + dashed + "'?)";
        check.problems.push_back({setting.line, "unknown key '" + item.name + "' " + where + hint + ": 'omni " +
                                                    joined(item.parents) + " --help' lists the flags"});
        continue;
      }
      if (!option->get_configurable()) {
        check.problems.push_back({setting.line, "'" + item.name + "' " + where + " cannot be set in a config file"});
        continue;
      }
      if (auto [first, fresh] = set_on_line.emplace(option, setting.line); !fresh) {
        check.problems.push_back({setting.line, "'" + item.name + "' " + where + " is set twice (first on line " +
                                                    std::to_string(first->second) + ")"});
        continue;
      }
      ++check.settings;
      if (auto refused = try_value(app, *option, item); !refused.empty())
        check.problems.push_back({setting.line, "'" + item.name + "' " + where + ": " + refused});
    }
  }
  std::stable_sort(check.problems.begin(), check.problems.end(),
                   [](const ConfigProblem& a, const ConfigProblem& b) { return a.line < b.line; });
  return check;
}

std::string config_problem_text(const std::string& path, const ConfigProblem& problem) {
  return path + ":" + std::to_string(problem.line) + ": " + problem.message;
}

}  // namespace omni::cli
