#include "net/relay_preamble.h"

#include <openssl/rand.h>

#include <algorithm>

#include "base/parse.h"
#include "net/errors.h"
#include "net/peer_id.h"

namespace omni::net {
namespace {

bool printable(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

std::string shown(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, 64)) out += (c >= 0x20 && c <= 0x7e) ? c : '?';
  return "'" + out + (line.size() > 64 ? "...'" : "'");
}

struct LineReader {
  explicit LineReader(kj::AsyncInputStream& input) : in(input) {}
  kj::AsyncInputStream& in;
  std::string line;
  char byte = 0;

  kj::Promise<std::string> next() {
    return in.tryRead(&byte, 1, 1).then([this](size_t n) -> kj::Promise<std::string> {
      if (n == 0)
        throw_rpc_error(ErrorCode::Unavailable,
                        line.empty() ? "the connection closed before its relay line"
                                     : "the connection closed in the middle of its relay line " + shown(line));
      if (byte == '\n') return kj::mv(line);
      line += byte;
      if (line.size() >= kMaxRelayLine)
        throw_rpc_error(ErrorCode::InvalidArgument,
                        "relay line " + shown(line) + " is longer than " + std::to_string(kMaxRelayLine) + " bytes");
      return next();
    });
  }
};

}  // namespace

std::string format_relay_request(const RelayRequest& request) {
  std::string line(kRelayMagic);
  switch (request.kind) {
    case RelayRequest::Kind::Connect: line += " CONNECT " + request.peer_id; break;
    case RelayRequest::Kind::Register: line += " REGISTER"; break;
    case RelayRequest::Kind::Accept: line += " ACCEPT " + relay_token_hex(request.token); break;
  }
  return line + "\n";
}

Result<RelayRequest> parse_relay_request(std::string_view line) {
  if (line.size() >= kMaxRelayLine)
    return Error{ErrorCode::InvalidArgument, "relay line is longer than " + std::to_string(kMaxRelayLine) + " bytes"};
  const auto space = line.find(' ');
  const std::string_view magic = line.substr(0, space);
  if (magic != kRelayMagic) {
    if (magic.substr(0, 11) == kRelayMagic.substr(0, 11))
      return Error{
          ErrorCode::InvalidArgument,
          "relay protocol " + shown(magic) + " is not supported (this relay speaks " + std::string(kRelayMagic) + ")"};
    return Error{ErrorCode::InvalidArgument,
                 "not a relay request: " + shown(line) + " (expected " + std::string(kRelayMagic) + " ...)"};
  }
  if (!printable(line))
    return Error{ErrorCode::InvalidArgument, "relay line " + shown(line) + " has non-printable bytes"};
  std::string_view rest = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  const auto space2 = rest.find(' ');
  const std::string_view verb = rest.substr(0, space2);
  const std::string_view arg = space2 == std::string_view::npos ? std::string_view() : rest.substr(space2 + 1);
  RelayRequest r;
  if (verb == "CONNECT") {
    r.kind = RelayRequest::Kind::Connect;
    if (!is_peer_id(std::string(arg)))
      return Error{ErrorCode::InvalidArgument,
                   "relay CONNECT needs a peer id (55 base32 characters starting with 'ci'), got " + shown(arg)};
    r.peer_id = std::string(arg);
    return r;
  }
  if (verb == "REGISTER") {
    if (space2 != std::string_view::npos)
      return Error{ErrorCode::InvalidArgument, "relay REGISTER takes no argument, got " + shown(arg)};
    r.kind = RelayRequest::Kind::Register;
    return r;
  }
  if (verb == "ACCEPT") {
    auto token = parse_relay_token(arg);
    if (!token) return token.error();
    r.kind = RelayRequest::Kind::Accept;
    r.token = *token;
    return r;
  }
  return Error{ErrorCode::InvalidArgument,
               "unknown relay request " + shown(verb) + " (expected CONNECT, REGISTER or ACCEPT)"};
}

std::string format_relay_ok() { return "OK\n"; }

std::string format_relay_error(std::string_view why) {
  std::string text = "ERR ";
  for (char c : why) {
    if (text.size() + 1 >= kMaxRelayLine) break;
    text += (c >= 0x20 && c <= 0x7e) ? c : ' ';
  }
  return text + "\n";
}

Result<void> parse_relay_reply(std::string_view line) {
  if (line == "OK") return {};
  if (line.substr(0, 4) == "ERR ")
    return Error{ErrorCode::Unavailable, "the relay says: " + std::string(line.substr(4))};
  return Error{ErrorCode::Corruption,
               "the relay replied " + shown(line) + ", which is not OK or ERR (is this a relay?)"};
}

RelayToken random_relay_token() {
  RelayToken t;
  if (RAND_bytes(t.data(), static_cast<int>(t.size())) != 1)
    throw_rpc_error(openssl_error(ErrorCode::Internal, "no random bytes for a relay token"));
  return t;
}

std::string relay_token_hex(const RelayToken& token) { return hex_encode(token); }

Result<RelayToken> parse_relay_token(std::string_view hex) {
  if (hex.size() != 32) return Error{ErrorCode::InvalidArgument, "relay token " + shown(hex) + " is not 32 hex digits"};
  auto bytes = hex_decode(hex);
  if (!bytes) return Error{ErrorCode::InvalidArgument, "relay token " + shown(hex) + " is not 32 lower-case hex digits"};
  RelayToken t{};
  std::copy(bytes->begin(), bytes->end(), t.begin());
  return t;
}

kj::Promise<std::string> read_relay_line(kj::AsyncInputStream& in) {
  auto reader = kj::heap<LineReader>(in);
  auto promise = reader->next();
  return promise.attach(kj::mv(reader));
}

}  // namespace omni::net
