#include "net/request_validation.h"

#include "net/peer_id.h"

namespace omni::net {
namespace {

std::string range_text(uint32_t a, uint32_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

Result<HiddenEncoding> encoding_of(proto::HiddenFormat format) {
  switch (format) {
    case proto::HiddenFormat::F16: return HiddenEncoding::F16;
    case proto::HiddenFormat::F32: return HiddenEncoding::F32;
    case proto::HiddenFormat::Q8: return HiddenEncoding::Q8;
  }
  return Error{ErrorCode::InvalidArgument,
               "unknown hidden-state format " + std::to_string(static_cast<unsigned>(format))};
}

}  // namespace

Result<OpenRequest> validate_open(proto::OpenParams::Reader params, const NodeLimits& limits) {
  OpenRequest r;
  r.block_begin = params.getBlockBegin();
  r.block_end = params.getBlockEnd();
  if (r.block_begin >= r.block_end || r.block_begin < limits.block_begin || r.block_end > limits.block_end)
    return Error{ErrorCode::InvalidArgument,
                 "blocks " + range_text(r.block_begin, r.block_end) + " are not a non-empty range within the blocks " +
                     range_text(limits.block_begin, limits.block_end) + " this node serves"};
  r.max_length = params.getMaxLength();
  if (r.max_length == 0 || r.max_length > limits.max_length)
    return Error{ErrorCode::InvalidArgument,
                 "maxLength " + std::to_string(r.max_length) + " is outside 1.." + std::to_string(limits.max_length)};
  auto encoding = encoding_of(params.getHiddenFormat());
  if (!encoding) return encoding.error();
  r.encoding = *encoding;
  auto hops = params.getDownstream();
  if (hops.size() > kMaxHops)
    return Error{ErrorCode::InvalidArgument,
                 "downstream lists " + std::to_string(hops.size()) + " hops, more than " + std::to_string(kMaxHops)};
  uint32_t expect = r.block_end;
  for (unsigned i = 0; i < hops.size(); ++i) {
    auto hop = hops[i];
    const std::string where = "downstream hop " + std::to_string(i) + ": ";
    auto address = parse_listen_address(hop.getAddress().cStr());
    if (!address) return Error{ErrorCode::InvalidArgument, where + address.error().message};
    if (address->port == 0) return Error{ErrorCode::InvalidArgument, where + "port 0"};
    const std::string id = hop.getPeerId().cStr();
    if (!is_peer_id(id)) return Error{ErrorCode::InvalidArgument, where + "'" + id + "' is not a peer id"};
    address->peer_id = id;
    HopRequest h{*address, hop.getBlockBegin(), hop.getBlockEnd()};
    if (h.block_begin != expect || h.block_end <= h.block_begin || h.block_end > limits.n_layer)
      return Error{ErrorCode::InvalidArgument, where + "blocks " + range_text(h.block_begin, h.block_end) +
                                                   " do not continue the chain at block " + std::to_string(expect) +
                                                   " within " + std::to_string(limits.n_layer) + " blocks"};
    expect = h.block_end;
    r.downstream.push_back(std::move(h));
  }
  if (params.hasRingToken()) {
    auto token = validate_ring_token(params.getRingToken());
    if (!token) return token.error();
    r.ring_token = std::move(*token);
  }
  return r;
}

Result<std::string> validate_ring_token(capnp::Data::Reader token) {
  if (token.size() < kMinRingTokenBytes || token.size() > kMaxRingTokenBytes)
    return Error{ErrorCode::InvalidArgument, "the ring token has " + std::to_string(token.size()) +
                                                 " bytes; it must be " + std::to_string(kMinRingTokenBytes) + ".." +
                                                 std::to_string(kMaxRingTokenBytes) + " random bytes"};
  return std::string(reinterpret_cast<const char*>(token.begin()), token.size());
}

Result<HiddenEncoding> validate_hidden(proto::HiddenStates::Reader hidden, uint32_t n_embd, uint32_t max_rows) {
  auto encoding = encoding_of(hidden.getFormat());
  if (!encoding) return encoding.error();
  if (hidden.getNEmbd() != n_embd)
    return Error{ErrorCode::InvalidArgument, "hidden states have nEmbd " + std::to_string(hidden.getNEmbd()) +
                                                 ", the model has " + std::to_string(n_embd)};
  const uint32_t rows = hidden.getNTokens();
  if (rows == 0 || rows > max_rows)
    return Error{ErrorCode::InvalidArgument,
                 "hidden states have " + std::to_string(rows) + " rows, outside 1.." + std::to_string(max_rows)};
  const uint64_t expected = encoded_hidden_bytes(*encoding, rows, n_embd);
  if (hidden.getData().size() != expected)
    return Error{ErrorCode::InvalidArgument, "hidden states of " + std::to_string(rows) + " x " +
                                                 std::to_string(n_embd) + " in " + hidden_encoding_name(*encoding) +
                                                 " take " + std::to_string(expected) + " bytes, got " +
                                                 std::to_string(hidden.getData().size())};
  return encoding;
}

Result<ForwardRequest> validate_forward(proto::ForwardInput::Reader input, const SessionLimits& limits) {
  ForwardRequest r;
  const auto which = input.getInput().which();
  if (which == proto::ForwardInput::Input::TOKENS) {
    if (limits.block_begin != 0)
      return Error{ErrorCode::InvalidArgument, "this session starts at block " + std::to_string(limits.block_begin) +
                   " and takes hidden states, not tokens"};
    auto tokens = input.getInput().getTokens();
    if (tokens.size() == 0 || tokens.size() > limits.max_batch_tokens)
      return Error{ErrorCode::InvalidArgument, std::to_string(tokens.size()) + " tokens, outside 1.." +
                                                   std::to_string(limits.max_batch_tokens) + " per call"};
    r.tokens.reserve(tokens.size());
    for (unsigned i = 0; i < tokens.size(); ++i) {
      const int32_t t = tokens[i];
      if (t < 0 || static_cast<uint32_t>(t) >= limits.n_vocab)
        return Error{ErrorCode::InvalidArgument, "token " + std::to_string(i) + " has id " + std::to_string(t) +
                                                     ", outside the vocabulary 0.." +
                                                     std::to_string(limits.n_vocab - 1)};
      r.tokens.push_back(t);
    }
    r.n_tokens = tokens.size();
  } else if (which == proto::ForwardInput::Input::HIDDEN) {
    if (limits.block_begin == 0)
      return Error{ErrorCode::InvalidArgument, "this session starts at block 0 and takes tokens, not hidden states"};
    auto hidden = input.getInput().getHidden();
    auto encoding = validate_hidden(hidden, limits.n_embd, limits.max_batch_tokens);
    if (!encoding) return encoding.error();
    r.encoding = *encoding;
    r.n_tokens = hidden.getNTokens();
    auto data = hidden.getData();
    r.hidden.assign(data.begin(), data.end());
  } else {
    return Error{ErrorCode::InvalidArgument, "the input is neither tokens nor hidden states"};
  }
  r.start_position = input.getStartPosition();
  if (r.start_position < -1)
    return Error{ErrorCode::InvalidArgument,
                 "startPosition " + std::to_string(r.start_position) + " is negative (use -1 to continue)"};
  r.output_last = input.getOutputLast();
  if (r.output_last > r.n_tokens)
    return Error{ErrorCode::InvalidArgument, "outputLast " + std::to_string(r.output_last) + " exceeds the " +
                                                 std::to_string(r.n_tokens) + " input rows"};
  if (r.output_last == 0) r.output_last = r.n_tokens;
  r.call_id = input.getCallId();
  auto upstream = input.getUpstreamComputeMicros();
  if (upstream.size() > kMaxHops)
    return Error{ErrorCode::InvalidArgument, "upstreamComputeMicros lists " + std::to_string(upstream.size()) +
                                                 " hops, more than " + std::to_string(kMaxHops)};
  for (uint64_t us : upstream) r.upstream_micros.push_back(us);
  r.per_token_sums = input.getPerTokenSums();
  return r;
}

}  // namespace omni::net
