#include "base/fd_limit.h"

#include <sys/resource.h>

#include <cerrno>

#include "base/system_error.h"

namespace omni {

Result<FdLimit> raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return errno_error(errno, "getrlimit(RLIMIT_NOFILE)");
  if (limit.rlim_cur != limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) return errno_error(errno, "setrlimit(RLIMIT_NOFILE)");
    limit = raised;
  }
  auto value = [](rlim_t v) { return v == RLIM_INFINITY ? UINT64_MAX : static_cast<uint64_t>(v); };
  return FdLimit{value(limit.rlim_cur), value(limit.rlim_max)};
}

}  // namespace omni
