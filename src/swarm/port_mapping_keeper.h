// PortMappingKeeper: a node's port mapping on its home router (net::PortMapping, `omni node
// --upnp`) held for as long as the node runs. The router calls block, so they run on a thread of
// the keeper's own: it maps the port, reports the external "HOST:PORT" (or why there is none)
// once, renews the lease every half lease (logging a failed renewal and trying again at the next),
// and removes the mapping when the keeper is destroyed.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"
#include "net/port_mapping.h"

namespace omni::swarm {

class PortMappingKeeper {
 public:
  // `on_mapped` is called once, on the keeper's thread: the external "HOST:PORT" and the method
  // ("UPnP-IGD" or "NAT-PMP"), or the error of net::PortMapping::create. `log` gets renewal trouble.
  PortMappingKeeper(net::PortMappingOptions options,
                    std::function<void(Result<std::pair<std::string, std::string>>)> on_mapped,
                    std::function<void(const std::string&)> log);
  ~PortMappingKeeper();  // stops the thread, which removes the mapping first
  PortMappingKeeper(const PortMappingKeeper&) = delete;
  PortMappingKeeper& operator=(const PortMappingKeeper&) = delete;

 private:
  void run(net::PortMappingOptions options,
           std::function<void(Result<std::pair<std::string, std::string>>)> on_mapped,
           std::function<void(const std::string&)> log);

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omni::swarm
