#include "net/hidden_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/fp16.h"

namespace omni::net {
namespace {

// The wire is little-endian; so are the machines OmniNode builds for (x86-64, aarch64).
static_assert(std::endian::native == std::endian::little, "hidden-state codecs assume a little-endian host");

}  // namespace

Result<HiddenEncoding> parse_hidden_encoding(std::string_view name) {
  if (name == "f16") return HiddenEncoding::F16;
  if (name == "f32") return HiddenEncoding::F32;
  if (name == "q8") return HiddenEncoding::Q8;
  return Error{ErrorCode::InvalidArgument,
               "unknown hidden-state format '" + std::string(name) + "' (choose f16, f32 or q8)"};
}

const char* hidden_encoding_name(HiddenEncoding encoding) {
  switch (encoding) {
    case HiddenEncoding::F16: return "f16";
    case HiddenEncoding::F32: return "f32";
    case HiddenEncoding::Q8: return "q8";
  }
  return "?";
}

uint64_t encoded_hidden_bytes(HiddenEncoding encoding, uint64_t n_tokens, uint64_t n_embd) {
  // Sizes claimed by a peer can be anything: compute wide and saturate so no product wraps around.
  using Wide = unsigned __int128;
  Wide bytes = 0;
  switch (encoding) {
    case HiddenEncoding::F16: bytes = Wide{n_tokens} * n_embd * 2; break;
    case HiddenEncoding::F32: bytes = Wide{n_tokens} * n_embd * 4; break;
    case HiddenEncoding::Q8: bytes = Wide{n_tokens} * (Wide{n_embd} + 4); break;
  }
  return bytes > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(bytes);
}

Result<void> encode_hidden(std::span<const float> values, uint32_t n_embd, HiddenEncoding encoding,
                           std::vector<uint8_t>& out) {
  if (n_embd == 0 || values.size() % n_embd != 0)
    return Error{ErrorCode::InvalidArgument, "hidden states of " + std::to_string(values.size()) +
                                                 " values are not rows of " + std::to_string(n_embd)};
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      return Error{ErrorCode::InvalidArgument, "hidden state value " + std::to_string(i) + " is not finite"};
  const size_t n_tokens = values.size() / n_embd;
  out.resize(encoded_hidden_bytes(encoding, n_tokens, n_embd));
  switch (encoding) {
    case HiddenEncoding::F32:
      std::memcpy(out.data(), values.data(), values.size() * 4);
      break;
    case HiddenEncoding::F16:
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = kernels::fp32_to_fp16(values[i]);
        // A finite value past F16's range (65504) would go on as infinity and poison every later block.
        if ((h & 0x7fff) == 0x7c00)
          return Error{ErrorCode::InvalidArgument, "hidden state value " + std::to_string(i) + " (" +
                                                       std::to_string(values[i]) +
                                                       ") is beyond f16's range; use the f32 hidden-state format"};
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      break;
    case HiddenEncoding::Q8:
      for (size_t t = 0; t < n_tokens; ++t) {
        const float* row = values.data() + t * n_embd;
        uint8_t* dst = out.data() + t * (4 + size_t{n_embd});
        float amax = 0;
        for (uint32_t i = 0; i < n_embd; ++i) amax = std::max(amax, std::fabs(row[i]));
        const float scale = amax / 127.0f;
        std::memcpy(dst, &scale, 4);
        const float inv = scale > 0 ? 1.0f / scale : 0.0f;
        for (uint32_t i = 0; i < n_embd; ++i) {
          const float q = std::nearbyint(row[i] * inv);
          dst[4 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
        }
      }
      break;
  }
  return {};
}

Result<void> decode_hidden(std::span<const uint8_t> bytes, uint32_t n_tokens, uint32_t n_embd, HiddenEncoding encoding,
                           std::vector<float>& out) {
  const uint64_t expected = encoded_hidden_bytes(encoding, n_tokens, n_embd);
  if (bytes.size() != expected)
    return Error{ErrorCode::Corruption, "hidden states of " + std::to_string(n_tokens) + " x " +
                                            std::to_string(n_embd) + " in " + hidden_encoding_name(encoding) +
                                            " take " + std::to_string(expected) + " bytes, got " +
                                            std::to_string(bytes.size())};
  const size_t n = size_t{n_tokens} * n_embd;
  out.resize(n);
  switch (encoding) {
    case HiddenEncoding::F32:
      std::memcpy(out.data(), bytes.data(), n * 4);
      break;
    case HiddenEncoding::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        out[i] = kernels::fp16_to_fp32(h);
      }
      break;
    case HiddenEncoding::Q8:
      for (size_t t = 0; t < n_tokens; ++t) {
        const uint8_t* src = bytes.data() + t * (4 + size_t{n_embd});
        float scale;
        std::memcpy(&scale, src, 4);
        if (!std::isfinite(scale) || scale < 0)
          return Error{ErrorCode::Corruption, "q8 row " + std::to_string(t) + " has an invalid scale"};
        for (uint32_t i = 0; i < n_embd; ++i) out[t * n_embd + i] = static_cast<int8_t>(src[4 + i]) * scale;
      }
      break;
  }
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(out[i]))
      return Error{ErrorCode::Corruption, "hidden state value " + std::to_string(i) + " is not finite"};
  return {};
}

Result<void> round_trip_hidden(std::vector<float>& values, uint32_t n_embd, HiddenEncoding encoding) {
  std::vector<uint8_t> bytes;
  if (auto r = encode_hidden(values, n_embd, encoding, bytes); !r) return r;
  return decode_hidden(bytes, static_cast<uint32_t>(values.size() / n_embd), n_embd, encoding, values);
}

}  // namespace omni::net
