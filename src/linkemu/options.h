// Command-line options of omni-linkemu, parsed into a ProxyConfig.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "linkemu/proxy.h"

namespace omni::linkemu {

// What the command line asked for: run a proxy with `config`, or print `usage()` and exit 0.
struct Invocation {
  bool help = false;
  ProxyConfig config;
};

// Parses the arguments after the program name. Both "--flag value" and "--flag=value" work;
// --delay-ms/--jitter-ms/--rate-mbit set both directions and --up-*/--down-* override one
// ("up" is client → target), whatever their order.
Result<Invocation> parse_args(const std::vector<std::string>& args);

std::string usage();

}  // namespace omni::linkemu
