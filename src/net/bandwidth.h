// Bandwidth: a node's upload and download caps (--max-upload, --max-download), one token bucket per
// direction shared by every connection of the node (clients, next hops, blob fetches and serving
// alike), so the caps bound the node's total traffic, not each connection's.
//
// A bucket fills at `rate` bytes/s up to `burst` bytes. Taking bytes never fails: it debits them
// (the balance may go below zero) and answers how long the caller must wait before moving them, so
// concurrent takers queue behind each other in the order they asked and the long-run rate is exactly
// `rate` (at most `burst` above it over any interval). The arithmetic takes caller-supplied times so
// it is tested exactly; throttled_stream.h applies it to sockets.
//
// Thread-safe: a node's event loop and its fetch threads share one Bandwidth.
#pragma once

#include <cstdint>
#include <mutex>

namespace omni::net {

using Nanos = int64_t;  // a steady-clock time or duration

class TokenBucket {
 public:
  // `rate`: bytes per second, > 0. `burst`: most bytes saved up while idle, > 0.
  TokenBucket(uint64_t rate, uint64_t burst, Nanos now);
  // Debits `bytes` at `now`; returns how long to wait before moving them (0: at once).
  Nanos take(uint64_t bytes, Nanos now);
  uint64_t rate() const { return rate_; }
  uint64_t burst() const { return burst_; }

 private:
  uint64_t rate_;
  uint64_t burst_;
  double balance_;  // bytes that may move now without waiting; negative: owed
  Nanos updated_;
};

// The burst a cap of `rate` bytes/s allows: 1/16 s of traffic, at least 16 KiB (one TLS record),
// so a transfer of a few seconds stays within a few percent of the rate.
uint64_t default_burst(uint64_t rate);

class Bandwidth {
 public:
  // 0: that direction is not capped.
  Bandwidth(uint64_t max_upload, uint64_t max_download);
  // Wait before sending / after receiving `bytes` (0 when that direction is not capped).
  Nanos take_upload(uint64_t bytes);
  Nanos take_download(uint64_t bytes);
  uint64_t max_upload() const { return max_upload_; }
  uint64_t max_download() const { return max_download_; }
  // Largest piece a stream moves per take: a fraction of the burst, so no single write holds the
  // bucket for long.
  uint64_t upload_piece() const;
  uint64_t download_piece() const;

 private:
  const uint64_t max_upload_;
  const uint64_t max_download_;
  std::mutex mutex_;
  TokenBucket upload_;
  TokenBucket download_;
};

}  // namespace omni::net
