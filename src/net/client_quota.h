// ClientQuota: how many of one resource (the node's sessions, its waiting ring sinks) one client may
// hold at once. A client is two keys, each counted on its own: the peer id it proved in TLS, and the
// address it connects from. Anonymous peer ids cost nothing to make, so the address count is what
// bounds a host that makes a new id per connection; the peer id count bounds one client that moves
// between addresses. Both must be under the limit to take one more.
//
// Not thread-safe (the node uses it on its event loop thread). A Lease gives its unit back when
// destroyed; leases may outlive the ClientQuota (the counts are shared).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"

namespace omni::net {

struct ClientKey {
  std::string peer_id;
  std::string address;  // address_key() of the connection's source; empty: not counted by address
};

// The key a source address is counted under: an IPv4 address as is ("192.0.2.7", IPv4-mapped IPv6
// too), an IPv6 address by its /64 prefix ("2001:db8:1:2::/64"), since one host is usually given a
// whole /64. Empty for other families (unix sockets).
std::string address_key(const struct sockaddr* address, socklen_t length);

class ClientQuota {
 public:
  // `what`: the resource in error messages ("sessions"); `flag`: the option that sets `limit`.
  // limit 0: no limit.
  ClientQuota(std::string what, std::string flag, uint32_t limit);

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

   private:
    friend class ClientQuota;
    struct Counts;
    Lease(std::shared_ptr<Counts> counts, ClientKey key);
    void give_back();
    std::shared_ptr<Counts> counts_;
    ClientKey key_;
  };

  // One unit for `client`, or ResourceExhausted naming the key that is at the limit and the flag.
  Result<Lease> acquire(const ClientKey& client);

  uint32_t limit() const { return limit_; }
  uint32_t held_by_peer(const std::string& peer_id) const;
  uint32_t held_by_address(const std::string& address) const;

 private:
  std::string what_, flag_;
  uint32_t limit_;
  std::shared_ptr<Lease::Counts> counts_;
};

}  // namespace omni::net
