// The progress bar of a fetch on stderr (`omni fetch`, `omni node --model CID`, a model URL's
// download), drawn only when stderr is a terminal and at most every 100 ms.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "store/fetch.h"

namespace omni::cli {

class ProgressBar {
 public:
  ProgressBar() : enabled_(::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}
  // As net::PeerFetchOptions::progress: `done` draws the final state and ends the line.
  void update(const store::FetchProgress& p, bool done) {
    auto now = std::chrono::steady_clock::now();
    if (!enabled_ || (!done && now - last_ < std::chrono::milliseconds(100))) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double frac = p.total_bytes ? static_cast<double>(p.done_bytes) / static_cast<double>(p.total_bytes) : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>', bar += std::string(static_cast<size_t>(width - filled - 1), ' ');
    const double rate = secs > 0 ? static_cast<double>(p.done_bytes - p.resumed_bytes) / secs / (1 << 20) : 0;
    const std::string peers = p.active_peers ? std::to_string(p.active_peers) + " peers  " : "";
    std::fprintf(stderr, "\r[%s] %5.1f%% %7.1f/%.1f MiB %6.1f MiB/s %s%-12s", bar.c_str(), frac * 100,
                 static_cast<double>(p.done_bytes) / (1 << 20), static_cast<double>(p.total_bytes) / (1 << 20), rate,
                 peers.c_str(), p.blob.c_str());
    if (done) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace omni::cli
