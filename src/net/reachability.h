// The reachability check: can the Internet open a TCP connection to this machine's node port, or
// does the node need a relay? A machine cannot tell from the inside (a NAT or a firewall decides), so
// it asks a bootstrap node to connect back. Plain TCP, one text line each way, on the bootstrap's
// --listen port (the number its DHT uses over UDP):
//
//   asker -> bootstrap:  "OMNI-REACH/1 CHECK <port> <nonce>\n"   port 1024..65535, nonce 32 hex digits
//   bootstrap -> <the asker's own address>:<port>, within connect_timeout_ms:
//                        "OMNI-REACH/1 PROBE <nonce>\n", then closes
//   bootstrap -> asker:  "RESULT <verdict> <address>\n"          verdict open|refused|timeout|unreachable,
//                                                                address: the asker's as the bootstrap saw it
//                     or "ERR <reason> <sentence>\n"             reason busy|rate|bad
//
// The bootstrap connects back only to the address the request came from (never one named in it),
// to unprivileged ports, at most checks_per_minute per asker address (an IPv6 one by its /64), at
// most max_concurrent at once; a request line must arrive within request_timeout_ms. Lines are at
// most kMaxReachLine bytes with the newline.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "base/parse.h"
#include "base/result.h"

namespace omni::net {

inline constexpr std::string_view kReachMagic = "OMNI-REACH/1";
inline constexpr size_t kMaxReachLine = 128;

using ReachNonce = std::array<uint8_t, 16>;

// How the bootstrap's connection back ended.
enum class ReachVerdict { Open, Refused, TimedOut, Unreachable };
const char* reach_verdict_name(ReachVerdict verdict);  // "open", "refused", "timeout", "unreachable"

struct ReachRequest {
  uint16_t port = 0;
  ReachNonce nonce{};
};
std::string format_reach_request(const ReachRequest& request);  // with the newline
// `line` without its newline. Errors (InvalidArgument) name what is wrong.
Result<ReachRequest> parse_reach_request(std::string_view line);

struct ReachReply {
  ReachVerdict verdict = ReachVerdict::Open;
  std::string address;  // the asker's address as the bootstrap saw it
};
std::string format_reach_result(const ReachReply& reply);
// reason: "busy" (ResourceExhausted), "rate" (ResourceExhausted), "bad" (InvalidArgument).
std::string format_reach_error(std::string_view reason, std::string_view sentence);
// A RESULT line, or the Error an ERR line stands for ("the bootstrap says: <sentence>", the code by
// its reason), or Corruption for a line that is neither.
Result<ReachReply> parse_reach_reply(std::string_view line);

struct ReachabilityServerOptions {
  uint32_t connect_timeout_ms = 3000;  // the connection back
  uint32_t request_timeout_ms = 5000;  // for the asker's request line
  uint32_t checks_per_minute = 6;      // per asker address (IPv6: per /64)
  uint32_t max_concurrent = 16;        // checks in progress; more are answered "ERR busy"
  uint32_t max_tracked_askers = 4096;  // addresses remembered for the rate; a full table answers "busy"
};

// Answers reachability checks on a TCP listener, each connection on a thread of its own (at most
// max_concurrent checks, and 8 more threads that only answer "busy"; beyond, connections are
// closed unanswered). Stops (closes the listener, waits for the checks in progress: each is bounded by
// the two timeouts) on destruction.
class ReachabilityServer {
 public:
  // Errors: the address does not resolve or the port cannot be bound (AlreadyExists when taken).
  static Result<std::unique_ptr<ReachabilityServer>> start(const HostPort& listen,
                                                           const ReachabilityServerOptions& options = {});
  ~ReachabilityServer();
  uint16_t port() const { return port_; }

 private:
  ReachabilityServer(int fd, uint16_t port, const ReachabilityServerOptions& options);
  void accept_loop();
  void serve(int fd);
  // Takes one check of the rate for this address key; false when it has none left.
  enum class Admit { Yes, Rate, Full };
  Admit admit(const std::string& key);

  int fd_;
  uint16_t port_;
  ReachabilityServerOptions options_;
  int wake_[2] = {-1, -1};  // a pipe: the destructor writes to end accept_loop's poll
  std::mutex mutex_;
  std::condition_variable idle_;
  uint32_t active_ = 0;
  std::map<std::string, std::deque<int64_t>> recent_;  // per address key: its checks' times (ms) in the last minute
  std::thread acceptor_;
};

struct ReachabilityCheckOptions {
  // Listen on the port while the bootstrap connects back, and check that the probe arrives (so the
  // port reached this machine, not another one behind the same address). When the port is taken
  // (a node runs there), the check goes on without listening: the bootstrap's verdict stands.
  bool listen = true;
  uint32_t timeout_ms = 10000;  // the whole exchange with the bootstrap
};

struct ReachabilityResult {
  ReachVerdict verdict = ReachVerdict::Refused;
  std::string seen_address;   // this machine's address as the bootstrap saw it (behind a NAT: the public one)
  bool listened = false;      // this check listened on the port itself
  bool probe_received = false;  // ... and the bootstrap's probe with our nonce arrived there
  // Open, and (when listened) the probe arrived here.
  bool reachable() const { return verdict == ReachVerdict::Open && (!listened || probe_received); }
};

// Asks the bootstrap at `bootstrap` (its TCP check port) to connect back to `port` here. Errors:
// the bootstrap cannot be reached or does not answer in time (Unavailable / DeadlineExceeded: the
// check could not be made, which says nothing about the port), it refused the check (busy or rate:
// ResourceExhausted), a reply that is not a bootstrap's (Corruption).
Result<ReachabilityResult> check_reachability(const HostPort& bootstrap, uint16_t port,
                                              const ReachabilityCheckOptions& options = {});

}  // namespace omni::net
