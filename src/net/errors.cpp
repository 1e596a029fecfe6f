#include "net/errors.h"

#include <openssl/err.h>

#include <string_view>

namespace omni::net {
namespace {

// Removes a leading "[Code] " tag from `text` and returns its code, if it names one.
bool take_code_tag(std::string& text, ErrorCode& code) {
  if (text.empty() || text[0] != '[') return false;
  const size_t close = text.find("] ");
  if (close == std::string::npos) return false;
  const std::string_view name(text.data() + 1, close - 1);
  for (ErrorCode c : kAllErrorCodes) {
    if (name == to_string(c)) {
      code = c;
      text.erase(0, close + 2);
      return true;
    }
  }
  return false;
}

}  // namespace

kj::Exception::Type kj_type_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::Unavailable:
    case ErrorCode::DeadlineExceeded:
      return kj::Exception::Type::DISCONNECTED;
    case ErrorCode::ResourceExhausted:
      return kj::Exception::Type::OVERLOADED;
    default:
      return kj::Exception::Type::FAILED;
  }
}

ErrorCode error_code_of(kj::Exception::Type type) {
  switch (type) {
    case kj::Exception::Type::DISCONNECTED: return ErrorCode::Unavailable;
    case kj::Exception::Type::OVERLOADED: return ErrorCode::ResourceExhausted;
    case kj::Exception::Type::UNIMPLEMENTED: return ErrorCode::InvalidArgument;  // the peer has no such method
    case kj::Exception::Type::FAILED: return ErrorCode::Internal;
  }
  return ErrorCode::Internal;
}

kj::Exception rpc_exception(const Error& error) {
  const std::string text = std::string("[") + to_string(error.code) + "] " + error.message;
  return kj::Exception(kj_type_of(error.code), __FILE__, __LINE__, kj::heapString(text.c_str()));
}

void throw_rpc_error(const Error& error) { kj::throwFatalException(rpc_exception(error)); }

void rethrow_with_context(const kj::Exception& e, const std::string& where) {
  throw_rpc_error(to_error(e).with_context(where));
}

Error to_error(const kj::Exception& e) {
  std::string text(e.getDescription().cStr());
  // Each RPC hop a failure crossed adds this prefix.
  static constexpr std::string_view kRemote = "remote exception: ";
  while (text.rfind(kRemote, 0) == 0) text.erase(0, kRemote.size());
  ErrorCode code = error_code_of(e.getType());
  if (take_code_tag(text, code)) return Error{code, text};
  // Not ours: KJ_REQUIRE-style descriptions read "expected <condition>; <message>": keep the message.
  if (text.rfind("expected ", 0) == 0) {
    if (auto semi = text.find("; "); semi != std::string::npos) text.erase(0, semi + 2);
  }
  // kj's own disconnect messages are syscall-level ("::read(...): Connection reset by peer").
  if (e.getType() == kj::Exception::Type::DISCONNECTED) text = "connection lost (" + text + ")";
  return Error{code, text};
}

Error openssl_error(ErrorCode code, const std::string& what) {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    text += text.empty() ? "" : "; ";
    text += buf;
  }
  return Error{code, what + ": " + (text.empty() ? "no OpenSSL error recorded" : text)};
}

}  // namespace omni::net
