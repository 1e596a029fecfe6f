// Result<T>: the value of an operation that can fail, or the Error that says why.
//
// Errors are values at API boundaries: a function that can fail on bad input, I/O or a peer returns
// Result<T>; exceptions stay inside implementations. An Error's message is meant for a human and
// names the thing that was wrong (a file, a field, a peer) and what was wrong with it.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace omni {

// What kind of failure an Error is: callers decide by code (retry elsewhere, HTTP status, exit
// code), never by reading the message. Codes say what a caller can do about it:
enum class ErrorCode : uint8_t {
  Internal,           // a bug or an unexpected state on our side; not the caller's fault
  InvalidArgument,    // the request itself is wrong; repeating it anywhere fails the same way
  NotFound,           // the named thing (file, blob, model, peer, session) does not exist
  AlreadyExists,      // it exists already (a second listener on a port, a duplicate key)
  Unavailable,        // a peer or service cannot be reached or went away; may succeed elsewhere or later
  DeadlineExceeded,   // no answer in time; may succeed elsewhere or later
  ResourceExhausted,  // a limit was reached (memory, sessions, quota, disk, batch size)
  PermissionDenied,   // the caller is not allowed (identity, allow-list, file mode)
  Corruption,         // data failed a check (hash mismatch, malformed file or message)
  Cancelled,          // the operation was stopped on purpose (client disconnected, shutdown)
};

// Every code, for tables over all of them (the wire's tag decoding, tests).
inline constexpr ErrorCode kAllErrorCodes[] = {
    ErrorCode::Internal,          ErrorCode::InvalidArgument,  ErrorCode::NotFound,   ErrorCode::AlreadyExists,
    ErrorCode::Unavailable,       ErrorCode::DeadlineExceeded, ErrorCode::ResourceExhausted,
    ErrorCode::PermissionDenied,  ErrorCode::Corruption,       ErrorCode::Cancelled,
};
static_assert(sizeof(kAllErrorCodes) / sizeof(kAllErrorCodes[0]) == static_cast<size_t>(ErrorCode::Cancelled) + 1,
              "kAllErrorCodes lists every ErrorCode");

// The code's name ("InvalidArgument", ...), for logs and JSON.
constexpr const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::Internal: return "Internal";
    case ErrorCode::InvalidArgument: return "InvalidArgument";
    case ErrorCode::NotFound: return "NotFound";
    case ErrorCode::AlreadyExists: return "AlreadyExists";
    case ErrorCode::Unavailable: return "Unavailable";
    case ErrorCode::DeadlineExceeded: return "DeadlineExceeded";
    case ErrorCode::ResourceExhausted: return "ResourceExhausted";
    case ErrorCode::PermissionDenied: return "PermissionDenied";
    case ErrorCode::Corruption: return "Corruption";
    case ErrorCode::Cancelled: return "Cancelled";
  }
  return "Internal";
}

struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message;

  Error() = default;
  // An error with no more specific code is Internal; give a code wherever a caller could act on it.
  Error(std::string message) : message(std::move(message)) {}  // NOLINT(google-explicit-constructor)
  Error(const char* message) : message(message) {}              // NOLINT(google-explicit-constructor)
  Error(ErrorCode code, std::string message) : code(code), message(std::move(message)) {}

  bool is(ErrorCode c) const { return code == c; }
  // The same error with `context` in front of its message ("loading x.gguf: ..."); the code is kept.
  Error with_context(const std::string& context) const { return Error(code, context + ": " + message); }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { assert(failed_); return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace omni
