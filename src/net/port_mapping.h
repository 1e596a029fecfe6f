// PortMapping: a TCP port forwarded to this host by the home router in front of it, so that a node
// behind NAT is reachable directly (without a relay) where the router allows it. Asks by UPnP-IGD
// first (SSDP discovery on the LAN, then the router's WANIPConnection service; Debian's miniupnpc),
// then by NAT-PMP to the default gateway (libnatpmp).
//
// The mapping is leased: renew() asks again (before half the lease has passed), and the destructor
// removes it. Every call blocks (network round trips to the router, bounded by the timeouts below),
// so callers keep it off their event loop. Not thread-safe: one owner thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"

namespace omni::net {

struct PortMappingOptions {
  uint16_t internal_port = 0;  // the local TCP port to forward to
  uint16_t external_port = 0;  // asked for on the router; 0: the same as internal_port
  uint32_t lease_s = 3600;     // how long the router keeps it without a renewal
  uint32_t discover_ms = 2000;  // UPnP discovery, and separately the NAT-PMP exchange, at most this long
  std::string description = "omni node";
};

class PortMapping {
 public:
  // Maps the port. NotFound: neither an IGD nor a NAT-PMP gateway answered (no such router, or it
  // has the feature off); Unavailable: a router answered but refused the mapping (its message
  // included, e.g. the port taken by another host).
  static Result<std::unique_ptr<PortMapping>> create(const PortMappingOptions& options);
  ~PortMapping();  // removes the mapping (best effort: the lease ends it anyway)
  PortMapping(const PortMapping&) = delete;
  PortMapping& operator=(const PortMapping&) = delete;

  // Asks for the same mapping again (a fresh lease). Errors as create's.
  Result<void> renew();

  const std::string& external_host() const { return external_host_; }  // the router's public IPv4
  uint16_t external_port() const { return external_port_; }
  const char* method() const { return upnp_ ? "UPnP-IGD" : "NAT-PMP"; }
  const PortMappingOptions& options() const { return options_; }

  struct Upnp;  // the router UPnP discovery found (port_mapping.cpp)

 private:
  PortMapping() = default;
  Result<void> map_natpmp();
  PortMappingOptions options_;
  std::unique_ptr<Upnp> upnp_;  // set: mapped by UPnP-IGD; else by NAT-PMP
  std::string external_host_;
  uint16_t external_port_ = 0;
};

}  // namespace omni::net
