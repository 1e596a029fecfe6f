#include "linkemu/options.h"

#include <charconv>
#include <cmath>
#include <optional>

namespace omni::linkemu {

namespace {

Result<double> parse_nonnegative(const std::string& flag, const std::string& text) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || !std::isfinite(value) || value < 0) {
    return Error{ErrorCode::InvalidArgument, flag + ": expected a non-negative number, got '" + text + "'"};
  }
  return value;
}

Result<std::uint64_t> parse_unsigned(const std::string& flag, const std::string& text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty()) {
    return Error{ErrorCode::InvalidArgument, flag + ": expected a non-negative integer, got '" + text + "'"};
  }
  return value;
}

Nanos millis_to_nanos(double ms) { return static_cast<Nanos>(std::llround(ms * 1e6)); }

// The settings for one direction: a per-direction flag wins over the common one.
struct DirectionFlags {
  std::optional<double> delay_ms, jitter_ms, rate_mbit;
};

DirectionParams resolve_direction(const DirectionFlags& own, const DirectionFlags& common) {
  DirectionParams p;
  p.delay_ns = millis_to_nanos(own.delay_ms.value_or(common.delay_ms.value_or(0)));
  p.jitter_ns = millis_to_nanos(own.jitter_ms.value_or(common.jitter_ms.value_or(0)));
  p.rate_bits_per_s = own.rate_mbit.value_or(common.rate_mbit.value_or(0)) * 1e6;
  return p;
}

}  // namespace

std::string usage() {
  return "usage: omni-linkemu --listen HOST:PORT --target HOST:PORT [options]\n"
         "\n"
         "A TCP proxy that emulates a network link: each connection accepted on --listen is forwarded\n"
         "to --target with one-way delay, jitter and a bandwidth cap in each direction. 'up' is\n"
         "client -> target, 'down' is target -> client. Prints 'listening HOST:PORT' once ready.\n"
         "\n"
         "  --delay-ms D          one-way propagation delay, both directions (default 0)\n"
         "  --jitter-ms J         propagation varies uniformly in [D-J, D+J]; never reorders bytes\n"
         "  --rate-mbit R         bottleneck rate in Mbit/s of payload, both directions (0 = unlimited)\n"
         "  --up-delay-ms, --down-delay-ms, --up-jitter-ms, --down-jitter-ms,\n"
         "  --up-rate-mbit, --down-rate-mbit   the same for one direction (override the above)\n"
         "  --queue-bytes N       bytes in flight per direction before the sender is paused\n"
         "                        (default max(2 x bandwidth-delay product, 1 MiB))\n"
         "  --seed S              jitter seed (default 1)\n"
         "  --start-unshaped      forward without delay or rate limit until SIGUSR1 (SIGUSR1 turns\n"
         "                        the emulation on, SIGUSR2 off; e.g. to upload weights first)\n"
         "  --verbose             log each connection to stderr\n"
         "  --help                this text\n";
}

Result<Invocation> parse_args(const std::vector<std::string>& args) {
  Invocation inv;
  DirectionFlags common, up, down;
  bool have_listen = false;
  bool have_target = false;

  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") {
      inv.help = true;
      return inv;
    }
    if (flag == "--verbose") {
      inv.config.verbose = true;
      continue;
    }
    if (flag == "--start-unshaped") {
      inv.config.start_shaped = false;
      continue;
    }
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return Error{ErrorCode::InvalidArgument, flag + " needs a value"};
      return args[++i];
    };
    auto number_into = [&](std::optional<double>& slot) -> Result<void> {
      auto text = value();
      if (!text) return text.error();
      auto v = parse_nonnegative(flag, *text);
      if (!v) return v.error();
      slot = *v;
      return {};
    };

    Result<void> r;
    if (flag == "--listen" || flag == "--target") {
      auto text = value();
      if (!text) return text.error();
      auto e = parse_host_port(*text);
      if (!e) return e.error().with_context(flag);
      (flag == "--listen" ? inv.config.listen : inv.config.target) = *e;
      (flag == "--listen" ? have_listen : have_target) = true;
    } else if (flag == "--delay-ms") {
      r = number_into(common.delay_ms);
    } else if (flag == "--jitter-ms") {
      r = number_into(common.jitter_ms);
    } else if (flag == "--rate-mbit") {
      r = number_into(common.rate_mbit);
    } else if (flag == "--up-delay-ms") {
      r = number_into(up.delay_ms);
    } else if (flag == "--down-delay-ms") {
      r = number_into(down.delay_ms);
    } else if (flag == "--up-jitter-ms") {
      r = number_into(up.jitter_ms);
    } else if (flag == "--down-jitter-ms") {
      r = number_into(down.jitter_ms);
    } else if (flag == "--up-rate-mbit") {
      r = number_into(up.rate_mbit);
    } else if (flag == "--down-rate-mbit") {
      r = number_into(down.rate_mbit);
    } else if (flag == "--queue-bytes" || flag == "--seed") {
      auto text = value();
      if (!text) return text.error();
      auto v = parse_unsigned(flag, *text);
      if (!v) return v.error();
      if (flag == "--seed") {
        inv.config.seed = *v;
      } else {
        if (*v == 0) return Error{ErrorCode::InvalidArgument, "--queue-bytes must be at least 1"};
        inv.config.queue_limit_bytes = static_cast<std::size_t>(*v);
      }
    } else {
      return Error{ErrorCode::InvalidArgument, "unknown option '" + args[i] + "' (see --help)"};
    }
    if (!r) return r.error();
  }
  if (!have_listen) return Error{ErrorCode::InvalidArgument, "--listen HOST:PORT is required"};
  if (!have_target) return Error{ErrorCode::InvalidArgument, "--target HOST:PORT is required"};
  if (inv.config.target.port == 0)
    return Error{ErrorCode::InvalidArgument, "--target: port 0 is not a valid destination"};
  inv.config.up = resolve_direction(up, common);
  inv.config.down = resolve_direction(down, common);
  return inv;
}

}  // namespace omni::linkemu
