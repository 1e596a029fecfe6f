#include "swarm/port_mapping_keeper.h"

#include <chrono>

namespace omni::swarm {

PortMappingKeeper::PortMappingKeeper(net::PortMappingOptions options,
                                     std::function<void(Result<std::pair<std::string, std::string>>)> on_mapped,
                                     std::function<void(const std::string&)> log) {
  thread_ = std::thread([this, options = std::move(options), on_mapped = std::move(on_mapped),
                         log = std::move(log)]() mutable { run(std::move(options), std::move(on_mapped), std::move(log)); });
}

PortMappingKeeper::~PortMappingKeeper() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void PortMappingKeeper::run(net::PortMappingOptions options,
                            std::function<void(Result<std::pair<std::string, std::string>>)> on_mapped,
                            std::function<void(const std::string&)> log) {
  auto mapping = net::PortMapping::create(options);
  if (!mapping) {
    on_mapped(mapping.error());
    return;
  }
  net::PortMapping& m = **mapping;
  on_mapped(std::make_pair(m.external_host() + ":" + std::to_string(m.external_port()), std::string(m.method())));
  const auto period = std::chrono::seconds(std::max<uint32_t>(options.lease_s / 2, 1));
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stopping_; })) {
    lock.unlock();
    if (auto renewed = m.renew(); !renewed)
      log("renewing the port mapping failed (trying again in " + std::to_string(period.count()) +
          " s): " + renewed.error().message);
    lock.lock();
  }
  // `mapping` goes out of scope here: the mapping is removed from the router.
}

}  // namespace omni::swarm
