#include "net/port_mapping.h"

#include <arpa/inet.h>
#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
// libnatpmp declares strnatpmperr only when asked to (the library has it).
#define ENABLE_STRNATPMPERR
#include <natpmp.h>
#include <sys/select.h>

#include <chrono>
#include <string>

namespace omni::net {

// The router found by UPnP discovery: its control URLs and our address on its LAN.
struct PortMapping::Upnp {
  UPNPUrls urls{};
  IGDdatas data{};
  std::string lan_address;
  ~Upnp() { FreeUPNPUrls(&urls); }
};

namespace {

std::string upnp_error(int code) {
  const char* text = strupnperror(code);
  return text ? std::string(text) + " (" + std::to_string(code) + ")" : "error " + std::to_string(code);
}

Result<void> upnp_add(PortMapping::Upnp& u, const PortMappingOptions& o, uint16_t external) {
  const std::string ext = std::to_string(external), in = std::to_string(o.internal_port);
  const std::string lease = std::to_string(o.lease_s);
  const int r = UPNP_AddPortMapping(u.urls.controlURL, u.data.first.servicetype, ext.c_str(), in.c_str(),
                                    u.lan_address.c_str(), o.description.c_str(), "TCP", nullptr, lease.c_str());
  if (r != UPNPCOMMAND_SUCCESS)
    return Error{ErrorCode::Unavailable, "the UPnP router refused to map TCP port " + ext + ": " + upnp_error(r)};
  return {};
}

// One NAT-PMP request already sent: its answer, waiting at most until `deadline`.
Result<natpmpresp_t> natpmp_answer(natpmp_t& n, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    natpmpresp_t response{};
    const int r = readnatpmpresponseorretry(&n, &response);
    if (r >= 0) {
      if (response.resultcode != 0)
        return Error{ErrorCode::Unavailable, "the NAT-PMP gateway refused: result code " +
                                                 std::to_string(response.resultcode)};
      return response;
    }
    if (r != NATPMP_TRYAGAIN)
      return Error{ErrorCode::NotFound, std::string("no NAT-PMP gateway answered: ") + strnatpmperr(r)};
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Error{ErrorCode::NotFound, "no NAT-PMP gateway answered in time"};
    timeval timeout{};
    getnatpmprequesttimeout(&n, &timeout);
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
    if (timeout.tv_sec * 1000000 + timeout.tv_usec > left) {
      timeout.tv_sec = static_cast<time_t>(left / 1000000);
      timeout.tv_usec = static_cast<suseconds_t>(left % 1000000);
    }
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(n.s, &fds);
    select(n.s + 1, &fds, nullptr, nullptr, &timeout);
  }
}

}  // namespace

Result<std::unique_ptr<PortMapping>> PortMapping::create(const PortMappingOptions& options) {
  std::unique_ptr<PortMapping> m(new PortMapping());
  m->options_ = options;
  if (m->options_.external_port == 0) m->options_.external_port = options.internal_port;
  int error = 0;
  UPNPDev* devices = upnpDiscover(static_cast<int>(options.discover_ms), nullptr, nullptr, UPNP_LOCAL_PORT_ANY, 0, 2,
                                  &error);
  std::string upnp_problem = "no UPnP-IGD router answered";
  if (devices) {
    auto u = std::make_unique<Upnp>();
    char lan[64] = {};
    const int igd = UPNP_GetValidIGD(devices, &u->urls, &u->data, lan, sizeof lan);
    freeUPNPDevlist(devices);
    if (igd == 1 || igd == 2) {
      u->lan_address = lan;
      char external[64] = {};
      const int r = UPNP_GetExternalIPAddress(u->urls.controlURL, u->data.first.servicetype, external);
      if (r != UPNPCOMMAND_SUCCESS || external[0] == 0) {
        upnp_problem = "the UPnP router did not tell its external address: " + upnp_error(r);
      } else if (auto added = upnp_add(*u, m->options_, m->options_.external_port); !added) {
        return added.error();
      } else {
        m->external_host_ = external;
        m->external_port_ = m->options_.external_port;
        m->upnp_ = std::move(u);
        return m;
      }
    } else {
      upnp_problem = "a UPnP device answered but is no Internet gateway";
    }
  }
  if (auto pmp = m->map_natpmp(); !pmp) {
    if (pmp.error().is(ErrorCode::Unavailable)) return pmp.error();
    return Error{ErrorCode::NotFound, upnp_problem + "; " + pmp.error().message};
  }
  return m;
}

Result<void> PortMapping::map_natpmp() {
  natpmp_t n{};
  if (const int r = initnatpmp(&n, 0, 0); r < 0)
    return Error{ErrorCode::NotFound, std::string("no NAT-PMP gateway: ") + strnatpmperr(r)};
  struct Close {
    natpmp_t& n;
    ~Close() { closenatpmp(&n); }
  } close{n};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.discover_ms);
  if (sendpublicaddressrequest(&n) < 0) return Error{ErrorCode::NotFound, "cannot send a NAT-PMP request"};
  auto address = natpmp_answer(n, deadline);
  if (!address) return address.error();
  if (sendnewportmappingrequest(&n, NATPMP_PROTOCOL_TCP, options_.internal_port, options_.external_port,
                                options_.lease_s) < 0)
    return Error{ErrorCode::NotFound, "cannot send a NAT-PMP request"};
  auto mapped = natpmp_answer(n, deadline);
  if (!mapped) return mapped.error();
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address->pnu.publicaddress.addr, text, sizeof text);
  external_host_ = text;
  external_port_ = mapped->pnu.newportmapping.mappedpublicport;
  return {};
}

Result<void> PortMapping::renew() {
  if (upnp_) return upnp_add(*upnp_, options_, external_port_);
  options_.external_port = external_port_;
  return map_natpmp();
}

PortMapping::~PortMapping() {
  if (upnp_) {
    const std::string ext = std::to_string(external_port_);
    UPNP_DeletePortMapping(upnp_->urls.controlURL, upnp_->data.first.servicetype, ext.c_str(), "TCP", nullptr);
    return;
  }
  // NAT-PMP removes a mapping asked for with a lifetime of 0.
  natpmp_t n{};
  if (initnatpmp(&n, 0, 0) < 0) return;
  if (sendnewportmappingrequest(&n, NATPMP_PROTOCOL_TCP, options_.internal_port, 0, 0) >= 0)
    (void)natpmp_answer(n, std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.discover_ms));
  closenatpmp(&n);
}

}  // namespace omni::net
