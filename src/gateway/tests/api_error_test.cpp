// The one mapping from ErrorCode to HTTP status, and what of an error's text reaches a client.
#include "gateway/api_error.h"

#include <map>
#include <string>

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

// The response is parsed back here by hand: the status line, each header, and a body whose length
// is the one Content-Length announced and whose JSON is the error's own.
TEST(ClosingHttpResponse, IsAWholeResponseThatAnHttpParserAccepts) {
  ApiError refusal = rate_limited("slow down", 7);
  const std::string response = closing_http_response(refusal, {{"Vary", "Origin"}, {"X-Extra", "1"}});
  const size_t head_end = response.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string head = response.substr(0, head_end + 2), body = response.substr(head_end + 4);
  EXPECT_EQ(head.substr(0, head.find("\r\n")), "HTTP/1.1 429 Too Many Requests");
  std::map<std::string, std::string> headers;
  for (size_t at = head.find("\r\n") + 2; at < head.size();) {
    const size_t end = head.find("\r\n", at);
    const std::string line = head.substr(at, end - at);
    const size_t colon = line.find(": ");
    ASSERT_NE(colon, std::string::npos) << line;
    headers[line.substr(0, colon)] = line.substr(colon + 2);
    at = end + 2;
  }
  EXPECT_EQ(headers["Content-Length"], std::to_string(body.size()));
  EXPECT_EQ(headers["Content-Type"], "application/json");
  EXPECT_EQ(headers["Connection"], "close");
  EXPECT_EQ(headers["Retry-After"], "7");
  EXPECT_EQ(headers["Vary"], "Origin");
  EXPECT_EQ(headers["X-Extra"], "1");
  EXPECT_EQ(nlohmann::json::parse(body), refusal.to_json());

  refusal.status = 403;
  refusal.retry_after_s = 0;
  const std::string forbidden = closing_http_response(refusal);
  EXPECT_EQ(forbidden.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u);
  EXPECT_EQ(forbidden.find("Retry-After"), std::string::npos);
}

}  // namespace
}  // namespace omni::gateway
