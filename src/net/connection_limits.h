// ConnectionLimits: how many connections a server holds at once, in total and from one source
// address, so that one host (or a crowd) cannot take every descriptor and handshake slot and keep
// everyone else out. A connection is admitted before any TLS work; a refusal is an Error
// (ResourceExhausted) naming the limit, which the server tells the peer and logs.
//
// Source addresses are compared as given (the host part of the peer's address, no port); IPv6
// peers count per /64, since one host usually holds a whole /64.
//
// Not thread-safe: used on the event loop thread that accepts connections.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"

namespace omni::net {

class ConnectionLimits {
  struct Counts {
    uint32_t total = 0;
    std::map<std::string, uint32_t> per_source;
  };

 public:
  ConnectionLimits(uint32_t max_total, uint32_t max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source), counts_(std::make_shared<Counts>()) {}

  // Holds one admitted connection's place; gives it back when destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept = default;
    Slot& operator=(Slot&& other) noexcept;
    ~Slot();

   private:
    friend class ConnectionLimits;
    Slot(std::shared_ptr<Counts> counts, std::string source) : counts_(std::move(counts)), source_(std::move(source)) {}
    void release();
    std::shared_ptr<Counts> counts_;
    std::string source_;
  };

  // A place for a connection from `source` (source_key()), or ResourceExhausted naming the limit.
  Result<Slot> admit(const std::string& source);

  uint32_t total() const { return counts_->total; }
  uint32_t from(const std::string& source) const;

 private:
  uint32_t max_total_, max_per_source_;
  std::shared_ptr<Counts> counts_;
};

// The key a peer's address counts under: client_quota.h's address_key() (the IPv4 address, or the
// /64 of an IPv6 one), or "other" where that has none (e.g. a Unix socket: tests).
std::string source_key(const sockaddr* address, socklen_t length);

}  // namespace omni::net
