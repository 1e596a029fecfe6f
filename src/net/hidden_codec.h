// Encodings of hidden states (rows of n_embd floats) for the wire: F32 (exact), F16 (the default,
// half the bytes) and Q8 (per row an f32 scale then n_embd int8, about a quarter of F32).
//
// Pure functions, no capnp: the server, the client and the perplexity-cost tool share them.
// decode validates everything a peer could get wrong: byte length against (n_tokens, n_embd,
// format), and finiteness of every value (a NaN or Inf would silently poison the KV cache).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni::net {

enum class HiddenEncoding : uint8_t { F16 = 0, F32 = 1, Q8 = 2 };  // values match proto::HiddenFormat

// "f16", "f32", "q8" (and back); parse fails with a message listing the choices.
Result<HiddenEncoding> parse_hidden_encoding(std::string_view name);
const char* hidden_encoding_name(HiddenEncoding encoding);

// Bytes the encoding of n_tokens rows takes; UINT64_MAX when that does not fit in 64 bits.
uint64_t encoded_hidden_bytes(HiddenEncoding encoding, uint64_t n_tokens, uint64_t n_embd);

// Encodes values (n_tokens x n_embd, row-major) into `out` (resized). Non-finite inputs are an Error.
Result<void> encode_hidden(std::span<const float> values, uint32_t n_embd, HiddenEncoding encoding,
                           std::vector<uint8_t>& out);

// Decodes `bytes` holding n_tokens x n_embd values into `out` (resized).
Result<void> decode_hidden(std::span<const uint8_t> bytes, uint32_t n_tokens, uint32_t n_embd,
                           HiddenEncoding encoding, std::vector<float>& out);

// encode then decode in place: what a value looks like after crossing the wire.
Result<void> round_trip_hidden(std::vector<float>& values, uint32_t n_embd, HiddenEncoding encoding);

}  // namespace omni::net
