#include "gateway/fair_use.h"

#include <algorithm>

namespace omni::gateway {

ClientClass classify(std::string_view remote_addr, std::string_view node_id, uint64_t work,
                     const FairUseOptions& options) {
  ClientClass c;
  c.node_id = node_id;
  c.rate_key = remote_addr;
  if (node_id.empty() || work == 0) return c;
  c.priority = true;
  c.rate_key = "node:" + std::string(node_id);
  const double unit = static_cast<double>(std::max<uint64_t>(1, options.work_unit));
  c.limit_scale = std::clamp(1.0 + static_cast<double>(work) / unit, 1.0, std::max(1.0, options.max_scale));
  return c;
}

}  // namespace omni::gateway
