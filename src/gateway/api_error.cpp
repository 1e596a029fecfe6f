#include "gateway/api_error.h"

#include <utility>

namespace omni::gateway {

nlohmann::json ApiError::to_json() const {
  nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (param) error["param"] = *param;
  if (code) error["code"] = *code;
  return {{"error", std::move(error)}};
}

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

}  // namespace

std::string closing_http_response(const ApiError& error,
                                  const std::vector<std::pair<std::string, std::string>>& headers) {
  const std::string body = error.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string response = "HTTP/1.1 " + std::to_string(error.status) + " " + reason_phrase(error.status) +
                         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n";
  if (error.retry_after_s > 0) response += "Retry-After: " + std::to_string(error.retry_after_s) + "\r\n";
  for (const auto& [name, value] : headers) response += name + ": " + value + "\r\n";
  return response + "\r\n" + body;
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

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return 400;
    case ErrorCode::PermissionDenied: return 403;
    case ErrorCode::NotFound: return 404;
    case ErrorCode::AlreadyExists: return 409;
    case ErrorCode::Cancelled: return 499;
    case ErrorCode::ResourceExhausted: return 503;
    case ErrorCode::Unavailable: return 503;
    case ErrorCode::DeadlineExceeded: return 504;
    case ErrorCode::Internal:
    case ErrorCode::Corruption: return 500;
  }
  return 500;
}

bool message_reaches_client(ErrorCode code) {
  return code == ErrorCode::InvalidArgument || code == ErrorCode::NotFound || code == ErrorCode::AlreadyExists ||
         code == ErrorCode::PermissionDenied;
}

ApiError api_error(const Error& error) {
  const int status = http_status(error.code);
  if (message_reaches_client(error.code))
    return ApiError{status, error.message, "invalid_request_error", std::nullopt, std::nullopt, 0};
  switch (error.code) {
    case ErrorCode::ResourceExhausted:
      return overloaded("the model's nodes are at capacity; retry shortly", 1);
    case ErrorCode::Unavailable:
      return ApiError{status, "the model is unavailable right now (its nodes cannot be reached); retry shortly",
                      "server_error", std::nullopt, std::string("unavailable"), 1};
    case ErrorCode::DeadlineExceeded:
      return ApiError{status, "the model's nodes did not answer in time", "server_error", std::nullopt,
                      std::string("timeout"), 0};
    case ErrorCode::Cancelled:
      return ApiError{status, "the request was cancelled", "invalid_request_error", std::nullopt,
                      std::string("cancelled"), 0};
    default:
      return server_error("internal error");
  }
}

}  // namespace omni::gateway
