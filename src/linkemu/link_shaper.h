// LinkShaper: the timing model of one direction of an emulated network link.
//
// A sender hands bytes to the link at some arrival time; the shaper says when each byte reaches the
// receiver. The model is a bottleneck link followed by a propagation path:
//
//   due = max(arrival, link free) + serialization (bytes · 8 / rate) + propagation (delay ± jitter)
//
// so latency = propagation + queueing behind earlier bytes + serialization, as on a real link.
// Bytes are scheduled in segments (about 1 ms of link time each, like packets) so that a large read
// does not arrive as one burst. Jitter varies the propagation of each segment, but delivery times
// never decrease within a direction: a TCP stream cannot be reordered, so a segment that would
// overtake its predecessor waits for it (that clamp is what jitter costs a stream on a real path).
//
// Serialization happens on a Bottleneck that several streams may share: all connections through
// one emulated link compete for its rate, as they would on a real one. Propagation, jitter and
// ordering are per stream.
//
// The classes are pure arithmetic over caller-supplied times, so they are tested exactly; the proxy
// feeds them CLOCK_MONOTONIC nanoseconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>

namespace omni::linkemu {

using Nanos = std::int64_t;  // a CLOCK_MONOTONIC time or a duration, in nanoseconds

struct DirectionParams {
  Nanos delay_ns = 0;           // one-way propagation delay
  Nanos jitter_ns = 0;          // propagation of each segment is delay + uniform(-jitter, +jitter), ≥ 0
  double rate_bits_per_s = 0;   // bottleneck rate of payload bytes; 0 = unlimited
};

// Bytes of a stream up to (not including) offset `end` are delivered at time `due`.
struct Segment {
  std::uint64_t end = 0;
  Nanos due = 0;
};

// The serializing end of a link: one packet at a time at `rate_bits_per_s` (0 = infinitely fast).
class Bottleneck {
 public:
  explicit Bottleneck(double rate_bits_per_s) : rate_bits_per_s_(rate_bits_per_s) {}

  // `bytes` handed over at `arrival` wait behind everything given earlier, then take bytes·8/rate:
  // returns when their last bit has left (ns, fractional so rounding never accumulates).
  double transmit(double arrival, std::size_t bytes);

  double rate_bits_per_s() const { return rate_bits_per_s_; }

 private:
  double rate_bits_per_s_;
  double free_at_ = 0;  // when it has serialized everything given to it
};

class LinkShaper {
 public:
  // `link` serializes this stream's bytes (its rate must be params.rate_bits_per_s); it may be
  // shared with other shapers and must outlive this one. `seed` drives the jitter samples.
  LinkShaper(DirectionParams params, std::uint64_t seed, Bottleneck& link);

  // Schedules `bytes` that arrived at `arrival` (times must not decrease between calls) and appends
  // their segments to `out`, in stream order with non-decreasing due times.
  void schedule(Nanos arrival, std::size_t bytes, std::deque<Segment>& out);

  // Like schedule(), but the bytes bypass the link (no serialization, no propagation): used while
  // the proxy's shaping is switched off, e.g. to upload model weights before a benchmark. They
  // still never overtake earlier bytes.
  void pass_through(Nanos arrival, std::size_t bytes, std::deque<Segment>& out);

  // The sender closed its side at `arrival`: returns when the close reaches the receiver (after
  // every scheduled byte; a FIN takes no serialization time but does take propagation, unless
  // `shaped` is false).
  Nanos schedule_close(Nanos arrival, bool shaped = true);

  // Largest segment: about 1 ms of serialization at the link's rate (at least one 1448-byte
  // packet, at most 64 KiB); without a rate limit, 64 KiB.
  std::size_t segment_bytes() const { return segment_bytes_; }

  // How many bytes may wait in the link before the sender is paused: twice the bandwidth-delay
  // product, at least 1 MiB (so an unlimited link still has a finite window).
  static std::size_t default_queue_limit(const DirectionParams& params);

  const DirectionParams& params() const { return params_; }

 private:
  Nanos propagation_sample();

  DirectionParams params_;
  Bottleneck* link_;
  std::size_t segment_bytes_;
  std::mt19937_64 rng_;
  double last_sent_ = 0;        // when this stream's last byte left the bottleneck (ns)
  Nanos last_due_ = 0;          // monotone clamp: no byte is delivered before an earlier one
  std::uint64_t scheduled_ = 0; // stream offset after the last scheduled byte
};

}  // namespace omni::linkemu
