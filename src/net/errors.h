// The bridge between kj exceptions (how Cap'n Proto reports failures, used inside src/net and on
// the wire) and omni::Error values (what src/net's public functions return), and the one place
// where kj's exception types and OpenSSL failures become ErrorCodes.
//
// Codes cross RPC in the exception's description: throw_rpc_error() writes "[Code] message" (the
// code's name from to_string(ErrorCode)) and picks the kj type that matches it; to_error() on the
// receiving side reads the tag back. A description without a tag (kj's own failures, older peers)
// gets its code from the kj type: DISCONNECTED Unavailable, OVERLOADED ResourceExhausted,
// UNIMPLEMENTED InvalidArgument, FAILED Internal. See docs/protocol.md, "Errors".
#pragma once

#include <kj/exception.h>

#include <string>

#include "base/result.h"

namespace omni::net {

// `error` as the kj exception that carries it over RPC (description "[Code] message").
kj::Exception rpc_exception(const Error& error);
[[noreturn]] void throw_rpc_error(const Error& error);
[[noreturn]] inline void throw_rpc_error(ErrorCode code, const std::string& message) {
  throw_rpc_error(Error{code, message});
}
// A failure from a call to `where` (a peer, a hop), passed on with the code it had.
[[noreturn]] void rethrow_with_context(const kj::Exception& e, const std::string& where);

// The Error an exception stands for: its code (the tag, else the kj type) and its human part
// ("remote exception: " prefixes, kj's "expected ...; " decorations and the tag removed). kj's own
// disconnections (syscall-level text) read "connection lost (...)".
Error to_error(const kj::Exception& e);

// The kj type an ErrorCode travels as (so peers that only look at the type still see the kind).
kj::Exception::Type kj_type_of(ErrorCode code);

// The ErrorCode of a kj type, for exceptions that carry no tag.
ErrorCode error_code_of(kj::Exception::Type type);

// `what` plus the text of OpenSSL's error queue (which it empties), with `code`: OpenSSL's own
// reasons are too varied to map, so the caller, who knows what the call was for, says.
Error openssl_error(ErrorCode code, const std::string& what);

}  // namespace omni::net
