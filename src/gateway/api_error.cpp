#include "gateway/api_error.h"

#include <utility>

namespace omni::gateway {

nlohmann::json ApiError::to_json() const {
  nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (param) error["param"] = *param;
  if (code) error["code"] = *code;
  return {{"error", std::move(error)}};
}

ApiError bad_request(std::string message, std::optional<std::string> param, std::optional<std::string> code) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code), 0};
}

ApiError not_found(std::string message, std::optional<std::string> code) {
  return ApiError{404, std::move(message), "invalid_request_error", std::nullopt, std::move(code), 0};
}

ApiError payload_too_large(size_t limit_bytes) {
  return ApiError{413, "the request body is larger than the gateway accepts (" + std::to_string(limit_bytes) + " bytes)",
                  "invalid_request_error", std::nullopt, std::string("request_too_large"), 0};
}

ApiError rate_limited(std::string message, int retry_after_s) {
  return ApiError{429, std::move(message), "rate_limit_error", std::nullopt, std::string("rate_limit_exceeded"),
                  retry_after_s};
}

ApiError overloaded(std::string message, int retry_after_s) {
  return ApiError{503, std::move(message), "server_error", std::nullopt, std::string("overloaded"), retry_after_s};
}

ApiError server_error(std::string message) {
  return ApiError{500, std::move(message), "server_error", std::nullopt, std::nullopt, 0};
}

}  // namespace omni::gateway
