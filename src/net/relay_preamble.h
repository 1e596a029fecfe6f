// The relay preamble: the one text line every TCP connection to a relay starts with, before any
// TLS, saying what the connection is for; and the relay's one-line reply to a client.
//
//   "OMNI-RELAY/1 CONNECT <peer id>\n"   a client wants the node with that id (then TLS to it)
//   "OMNI-RELAY/1 REGISTER\n"            a node's control connection (then TLS to the relay)
//   "OMNI-RELAY/1 ACCEPT <token>\n"      a node's dial-back for a client (token: 32 hex digits)
//   reply to CONNECT: "OK\n" (the next byte is the node's) or "ERR <sentence>\n" (then closed)
//
// Lines are at most kMaxRelayLine bytes including the newline, printable ASCII. Lines are read one
// byte at a time (read_relay_line) so that no byte after the newline is consumed: TLS follows.
// Pure parsing functions return Errors naming what is wrong; read_relay_line's promise fails with
// a kj exception (DISCONNECTED on an early end, FAILED on a bad line).
#pragma once

#include <kj/async-io.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace omni::net {

inline constexpr std::string_view kRelayMagic = "OMNI-RELAY/1";
inline constexpr size_t kMaxRelayLine = 512;

using RelayToken = std::array<uint8_t, 16>;

struct RelayRequest {
  enum class Kind { Connect, Register, Accept };
  Kind kind = Kind::Connect;
  std::string peer_id;  // Connect
  RelayToken token{};   // Accept
};

std::string format_relay_request(const RelayRequest& request);  // with the newline
// `line` without its newline.
Result<RelayRequest> parse_relay_request(std::string_view line);

// The relay's reply to CONNECT, with the newline; `why` is cut to fit and made printable.
std::string format_relay_ok();
std::string format_relay_error(std::string_view why);
// Ok, or an Error "the relay says: <sentence>" (ERR), or one saying the reply is not a relay's.
Result<void> parse_relay_reply(std::string_view line);

RelayToken random_relay_token();
std::string relay_token_hex(const RelayToken& token);
Result<RelayToken> parse_relay_token(std::string_view hex);

// Reads one line (returned without its newline) of at most kMaxRelayLine bytes, one byte at a time.
kj::Promise<std::string> read_relay_line(kj::AsyncInputStream& in);

}  // namespace omni::net
