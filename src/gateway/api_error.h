// ApiError: a failed API request as OpenAI reports it, an HTTP status plus the error object
// {"error": {"message", "type", "param", "code"}} that OpenAI's client libraries parse.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace omni::gateway {

struct ApiError {
  int status = 400;
  std::string message;                  // for a human: names the field or limit at fault
  std::string type = "invalid_request_error";
  std::optional<std::string> param;     // the request field at fault, if one is
  std::optional<std::string> code;      // machine-readable reason ("model_not_found", ...)
  int retry_after_s = 0;                // > 0: sent as Retry-After (429, 503)

  nlohmann::json to_json() const;
};

// `error` as a whole HTTP/1.1 response written straight to a socket, for answers given before or
// outside the HTTP server's routing (a refused head, a framing error): status line with its reason
// phrase, the JSON error body, Retry-After when set, `headers`, and "Connection: close", because
// whoever sends it closes the connection afterwards.
std::string closing_http_response(const ApiError& error,
                                  const std::vector<std::pair<std::string, std::string>>& headers = {});

// The usual ones, so every route words them the same way.
ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt,
                     std::optional<std::string> code = std::nullopt);
ApiError not_found(std::string message, std::optional<std::string> code = std::nullopt);
ApiError payload_too_large(size_t limit_bytes);
ApiError rate_limited(std::string message, int retry_after_s);
ApiError overloaded(std::string message, int retry_after_s);
ApiError server_error(std::string message);

// The HTTP status of a failure with `code`, the one place that decides it: InvalidArgument 400,
// PermissionDenied 403, NotFound 404, AlreadyExists 409, Cancelled 499 (the client went away),
// Internal and Corruption 500, ResourceExhausted and Unavailable 503 (the backend is full or cannot
// reach its nodes: retry shortly; the client's own rate limits are rate_limited()'s 429),
// DeadlineExceeded 504.
int http_status(ErrorCode code);

// A request that failed with `error`, as its client sees it: http_status(error.code), and the
// error's message only for the codes that speak about the request itself (InvalidArgument,
// NotFound, AlreadyExists, PermissionDenied). Other messages describe this server's insides (node
// addresses, file paths, exception text) and are replaced by a fixed sentence: whoever calls this
// for such a code logs `error` in full.
ApiError api_error(const Error& error);
// Whether api_error() passes the message of an error with `code` on to the client.
bool message_reaches_client(ErrorCode code);

}  // namespace omni::gateway
