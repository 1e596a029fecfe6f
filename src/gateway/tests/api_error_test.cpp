// The one mapping from ErrorCode to HTTP status, and what of an error's text reaches a client.
#include "gateway/api_error.h"

#include <gtest/gtest.h>

namespace omni::gateway {
namespace {

TEST(ApiErrorStatus, EachCodeHasItsStatus) {
  EXPECT_EQ(http_status(ErrorCode::InvalidArgument), 400);
  EXPECT_EQ(http_status(ErrorCode::PermissionDenied), 403);
  EXPECT_EQ(http_status(ErrorCode::NotFound), 404);
  EXPECT_EQ(http_status(ErrorCode::AlreadyExists), 409);
  EXPECT_EQ(http_status(ErrorCode::Cancelled), 499);
  EXPECT_EQ(http_status(ErrorCode::Internal), 500);
  EXPECT_EQ(http_status(ErrorCode::Corruption), 500);
  EXPECT_EQ(http_status(ErrorCode::ResourceExhausted), 503);
  EXPECT_EQ(http_status(ErrorCode::Unavailable), 503);
  EXPECT_EQ(http_status(ErrorCode::DeadlineExceeded), 504);
  for (ErrorCode code : kAllErrorCodes) EXPECT_EQ(api_error(Error{code, "x"}).status, http_status(code)) << to_string(code);
}

TEST(ApiErrorStatus, OnlyErrorsAboutTheRequestShowTheirText) {
  const std::string secret = "/home/op/.omni/identity.pem: std::bad_alloc at 10.1.2.3:7000";
  for (ErrorCode code : kAllErrorCodes) {
    const ApiError e = api_error(Error{code, secret});
    const std::string body = e.to_json().dump();
    const bool shown = body.find(secret) != std::string::npos;
    EXPECT_EQ(shown, message_reaches_client(code)) << to_string(code) << ": " << body;
    EXPECT_FALSE(e.message.empty()) << to_string(code);
  }
  EXPECT_TRUE(message_reaches_client(ErrorCode::InvalidArgument));
  EXPECT_TRUE(message_reaches_client(ErrorCode::NotFound));
  EXPECT_FALSE(message_reaches_client(ErrorCode::Internal));
  EXPECT_FALSE(message_reaches_client(ErrorCode::Corruption));
  EXPECT_FALSE(message_reaches_client(ErrorCode::Unavailable));
}

TEST(ApiErrorStatus, RetryableFailuresSayWhenToRetry) {
  EXPECT_GT(api_error(Error{ErrorCode::ResourceExhausted, "node is full"}).retry_after_s, 0);
  EXPECT_GT(api_error(Error{ErrorCode::Unavailable, "no node serves block 3"}).retry_after_s, 0);
  EXPECT_EQ(api_error(Error{ErrorCode::InvalidArgument, "bad"}).retry_after_s, 0);
  EXPECT_EQ(api_error(Error{ErrorCode::Internal, "bug"}).to_json()["error"]["type"], "server_error");
  EXPECT_EQ(api_error(Error{ErrorCode::InvalidArgument, "bad"}).to_json()["error"]["type"], "invalid_request_error");
}

}  // namespace
}  // namespace omni::gateway
