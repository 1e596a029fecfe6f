// Proxy: a userspace TCP link emulator (what `tc netem` does, for one TCP service).
//
// For each connection accepted on `listen` it opens one to `target` and forwards both directions
// through a LinkShaper, so every byte arrives no earlier than its arrival + queueing + serialization
// + propagation delay of that direction. A direction stops reading from its sender while more than
// its queue limit is in flight (backpressure instead of unbounded buffering, like a window-limited
// TCP sender behind a bottleneck). A half-close travels like data: the FIN reaches the other side
// after the bytes before it, one propagation delay later. A reset (read or write error) aborts both
// sides at once with RST. Connecting to the target costs no emulated round trip: the emulation is
// for the steady state of long-lived connections.
//
// One thread runs everything on epoll; the only timer is a timerfd armed at the next due delivery,
// so an idle or throttled proxy uses no CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/parse.h"
#include "base/result.h"
#include "linkemu/link_shaper.h"

namespace omni::linkemu {

using Endpoint = HostPort;  // base/parse.h

struct ProxyConfig {
  Endpoint listen;
  Endpoint target;
  DirectionParams up;    // client → target
  DirectionParams down;  // target → client
  std::uint64_t seed = 1;
  std::size_t queue_limit_bytes = 0;  // per direction; 0 = LinkShaper::default_queue_limit
  bool verbose = false;               // log each connection's open and close to stderr
  bool start_shaped = true;           // false: forward unshaped until set_shaping(true)
};

class Proxy {
 public:
  // Resolves both endpoints and starts listening (so clients may connect before run() is called).
  static Result<std::unique_ptr<Proxy>> start(const ProxyConfig& config);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // The bound address, numeric, e.g. "127.0.0.1:40123" or "[::1]:40123".
  std::string listen_address() const;
  std::uint16_t listen_port() const;

  // Serves connections until stop() is called; an Error only for a failure of the proxy itself
  // (a connection's failure is logged and closes that connection).
  Result<void> run();

  // Makes run() return soon. Safe from another thread and from a signal handler.
  void stop();

  // Switches the emulation on or off for bytes read from now on (bytes already scheduled keep their
  // times). Off, bytes are forwarded as they come: a benchmark uploads weights unshaped, then
  // measures shaped. Safe from another thread and from a signal handler.
  void set_shaping(bool on);

  // Connections currently open (both sockets held). Safe from any thread.
  std::size_t open_connections() const;

  // The most bytes one direction of one connection has held so far (read, not yet written): stays
  // below the queue limit plus one read of 64 KiB. Safe from any thread.
  std::size_t peak_queued_bytes() const;

  struct Impl;

 private:
  explicit Proxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni::linkemu
