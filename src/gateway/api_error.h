// ApiError: a failed API request as OpenAI reports it, an HTTP status plus the error object
// {"error": {"message", "type", "param", "code"}} that OpenAI's client libraries parse.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

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

// The usual ones, so every route words them the same way.
ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt,
                     std::optional<std::string> code = std::nullopt);
ApiError not_found(std::string message, std::optional<std::string> code = std::nullopt);
ApiError payload_too_large(size_t limit_bytes);
ApiError rate_limited(std::string message, int retry_after_s);
ApiError overloaded(std::string message, int retry_after_s);
ApiError server_error(std::string message);

}  // namespace omni::gateway
