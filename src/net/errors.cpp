#include "net/errors.h"

#include <string_view>

namespace omni::net {

void throw_rpc_error(kj::Exception::Type type, const std::string& message) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::heapString(message.c_str())));
}

std::string describe(const kj::Exception& e) {
  std::string text(e.getDescription().cStr());
  // Each RPC hop a failure crossed adds this prefix.
  static constexpr std::string_view kRemote = "remote exception: ";
  while (text.rfind(kRemote, 0) == 0) text.erase(0, kRemote.size());
  // KJ_REQUIRE-style descriptions read "expected <condition>; <message>": keep the message.
  if (text.rfind("expected ", 0) == 0) {
    if (auto semi = text.find("; "); semi != std::string::npos) text.erase(0, semi + 2);
  }
  // kj's own disconnect messages are syscall-level ("::read(...): Connection reset by peer"): say
  // what it means, once (messages relayed along a chain already say it).
  if (e.getType() == kj::Exception::Type::DISCONNECTED && text.find("connection lost") == std::string::npos &&
      text.find("timed out") == std::string::npos)
    text = "connection lost (" + text + ")";
  return text;
}

}  // namespace omni::net
