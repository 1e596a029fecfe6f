// errno -> ErrorCode, and errno_error's message, checked against the failures real calls give.
#include "base/system_error.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

namespace omni {
namespace {

TEST(SystemError, CodesSayWhatACallerCanDo) {
  EXPECT_EQ(error_code_from_errno(ENOENT), ErrorCode::NotFound);
  EXPECT_EQ(error_code_from_errno(EACCES), ErrorCode::PermissionDenied);
  EXPECT_EQ(error_code_from_errno(EPERM), ErrorCode::PermissionDenied);
  for (int e : {ENOSPC, EDQUOT, EMFILE, ENOMEM, EFBIG})
    EXPECT_EQ(error_code_from_errno(e), ErrorCode::ResourceExhausted) << e;
  EXPECT_EQ(error_code_from_errno(ETIMEDOUT), ErrorCode::DeadlineExceeded);
  for (int e : {ECONNREFUSED, ECONNRESET, EPIPE, EHOSTUNREACH, ENETUNREACH})
    EXPECT_EQ(error_code_from_errno(e), ErrorCode::Unavailable) << e;
  EXPECT_EQ(error_code_from_errno(EEXIST), ErrorCode::AlreadyExists);
  EXPECT_EQ(error_code_from_errno(EADDRINUSE), ErrorCode::AlreadyExists);
  EXPECT_EQ(error_code_from_errno(EINVAL), ErrorCode::InvalidArgument);
  EXPECT_EQ(error_code_from_errno(EIO), ErrorCode::Corruption);
  EXPECT_EQ(error_code_from_errno(0), ErrorCode::Internal);
  EXPECT_EQ(error_code_from_errno(-1), ErrorCode::Internal);
}

TEST(SystemError, RealFailuresGetTheirCodeAndText) {
  ASSERT_LT(::open("/nonexistent-dir/file", O_RDONLY), 0);
  const Error missing = errno_error(errno, "/nonexistent-dir/file: cannot open");
  EXPECT_EQ(missing.code, ErrorCode::NotFound);
  EXPECT_EQ(missing.message, std::string("/nonexistent-dir/file: cannot open: ") + std::strerror(ENOENT));

  char dir[] = "/tmp/omni-system-error-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ASSERT_NE(::mkdir(dir, 0700), 0);
  EXPECT_EQ(errno_error(errno, dir).code, ErrorCode::AlreadyExists);
  ::rmdir(dir);
}

}  // namespace
}  // namespace omni
