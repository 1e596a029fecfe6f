#include "linkemu/link_shaper.h"

#include <algorithm>
#include <cmath>

namespace omni::linkemu {

namespace {
constexpr std::size_t kMinSegment = 1448;       // one Ethernet-MTU TCP payload
constexpr std::size_t kMaxSegment = 64 * 1024;
constexpr double kNanosPerSecond = 1e9;
}  // namespace

double Bottleneck::transmit(double arrival, std::size_t bytes) {
  if (rate_bits_per_s_ <= 0) return arrival;  // infinitely fast: nothing ever waits
  free_at_ = std::max(free_at_, arrival) + static_cast<double>(bytes) * 8.0 * kNanosPerSecond / rate_bits_per_s_;
  return free_at_;
}

LinkShaper::LinkShaper(DirectionParams params, std::uint64_t seed, Bottleneck& link)
    : params_(params), link_(&link), rng_(seed) {
  if (params_.rate_bits_per_s > 0) {
    const double bytes_per_ms = params_.rate_bits_per_s / 8.0 / 1000.0;
    segment_bytes_ = std::clamp(static_cast<std::size_t>(bytes_per_ms), kMinSegment, kMaxSegment);
  } else {
    segment_bytes_ = kMaxSegment;
  }
}

std::size_t LinkShaper::default_queue_limit(const DirectionParams& params) {
  constexpr std::size_t kFloor = 1 << 20;
  if (params.rate_bits_per_s <= 0) return kFloor;
  const double round_trip_s = 2.0 * static_cast<double>(params.delay_ns + params.jitter_ns) / kNanosPerSecond;
  const double bdp = params.rate_bits_per_s / 8.0 * round_trip_s;
  return std::max(kFloor, static_cast<std::size_t>(2.0 * bdp));
}

Nanos LinkShaper::propagation_sample() {
  if (params_.jitter_ns <= 0) return params_.delay_ns;
  // A uniform double in [0, 1) from the top 53 bits: the same sequence with every standard library.
  const double unit = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double offset = (2.0 * unit - 1.0) * static_cast<double>(params_.jitter_ns);
  return std::max<Nanos>(0, params_.delay_ns + static_cast<Nanos>(std::llround(offset)));
}

void LinkShaper::schedule(Nanos arrival, std::size_t bytes, std::deque<Segment>& out) {
  while (bytes > 0) {
    const std::size_t n = std::min(bytes, segment_bytes_);
    bytes -= n;
    scheduled_ += n;
    last_sent_ = link_->transmit(static_cast<double>(arrival), n);
    const Nanos due = std::max(last_due_, static_cast<Nanos>(std::ceil(last_sent_)) + propagation_sample());
    last_due_ = due;
    // Segments of one read that land on the same instant are merged: fewer timer wake-ups.
    if (!out.empty() && out.back().due == due) {
      out.back().end = scheduled_;
    } else {
      out.push_back({scheduled_, due});
    }
  }
}

void LinkShaper::pass_through(Nanos arrival, std::size_t bytes, std::deque<Segment>& out) {
  if (bytes == 0) return;
  scheduled_ += bytes;
  last_due_ = std::max(last_due_, arrival);
  if (!out.empty() && out.back().due == last_due_) {
    out.back().end = scheduled_;
  } else {
    out.push_back({scheduled_, last_due_});
  }
}

Nanos LinkShaper::schedule_close(Nanos arrival, bool shaped) {
  if (!shaped) {
    last_due_ = std::max(last_due_, arrival);
    return last_due_;
  }
  // The FIN follows this stream's last byte out of the bottleneck (other streams' later bytes do
  // not hold it back).
  const double start = std::max(last_sent_, static_cast<double>(arrival));
  last_due_ = std::max(last_due_, static_cast<Nanos>(std::ceil(start)) + propagation_sample());
  return last_due_;
}

}  // namespace omni::linkemu
