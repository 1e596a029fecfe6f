#include "base/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace omni {
namespace {

// Lowers the soft limit (as `ulimit -S -n` would), then checks that raise_fd_limit brings it back
// up to the hard limit and reports what getrlimit says.
TEST(FdLimit, RaisesTheSoftLimitToTheHardOne) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  if (before.rlim_max != RLIM_INFINITY && before.rlim_max < 128) GTEST_SKIP() << "hard limit too low to lower";
  rlimit lowered = before;
  lowered.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);

  auto raised = raise_fd_limit();
  ASSERT_TRUE(raised) << raised.error().message;
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, before.rlim_max);
  EXPECT_EQ(raised->soft, now.rlim_max == RLIM_INFINITY ? UINT64_MAX : now.rlim_cur);
  EXPECT_EQ(raised->hard, raised->soft);

  auto again = raise_fd_limit();  // already at the hard limit: no change
  ASSERT_TRUE(again);
  EXPECT_EQ(again->soft, raised->soft);
}

}  // namespace
}  // namespace omni
