// The bridge between kj exceptions (how Cap'n Proto reports failures, used inside src/net) and
// omni::Error values (what src/net's public functions return).
#pragma once

#include <kj/exception.h>

#include <string>

#include "base/result.h"

namespace omni::net {

// Throws a kj exception of `type` whose description is exactly `message` (no file/line noise), so
// it travels over RPC as a readable sentence.
[[noreturn]] void throw_rpc_error(kj::Exception::Type type, const std::string& message);
[[noreturn]] inline void throw_rpc_error(const std::string& message) {
  throw_rpc_error(kj::Exception::Type::FAILED, message);
}

// The human part of an exception's description ("remote exception: " prefixes and kj's
// "expected ...; " decorations removed); disconnections get a sentence saying so.
std::string describe(const kj::Exception& e);

}  // namespace omni::net
