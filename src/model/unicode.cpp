#include "model/unicode.h"

#include <array>

namespace omni::model {
namespace {

bool is_continuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// For a lead byte of a multi-byte character: its total length and the range its second byte must
// fall in (narrower than 80..BF after E0, ED, F0 and F4, which is what excludes overlong forms,
// surrogates and code points above U+10FFFF). Length 0 for bytes that cannot start a character.
struct LeadInfo {
  size_t length;
  uint8_t second_min;
  uint8_t second_max;
};

LeadInfo lead_info(uint8_t lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {2, 0x80, 0xBF};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead >= 0xE1 && lead <= 0xEF) return {3, 0x80, 0xBF};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {4, 0x80, 0xBF};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes from text[pos] belong to a well-formed prefix of one character (at least 1 for a
// valid lead byte), and whether that prefix is the whole character.
struct Prefix {
  size_t length;
  bool complete;
};

Prefix well_formed_prefix(std::string_view text, size_t pos) {
  auto lead = static_cast<uint8_t>(text[pos]);
  if (lead < 0x80) return {1, true};
  LeadInfo info = lead_info(lead);
  if (info.length == 0) return {0, false};
  size_t n = 1;
  while (n < info.length && pos + n < text.size()) {
    auto byte = static_cast<uint8_t>(text[pos + n]);
    bool ok = n == 1 ? (byte >= info.second_min && byte <= info.second_max) : is_continuation(byte);
    if (!ok) break;
    ++n;
  }
  return {n, n == info.length};
}

struct Gpt2Alphabet {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, 0x144> byte_of_char;  // -1 where the code point is not in the alphabet

  Gpt2Alphabet() {
    byte_of_char.fill(-1);
    uint32_t next_extra = 0x100;
    for (uint32_t byte = 0; byte < 256; ++byte) {
      bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) ||
                       (byte >= 0xAE && byte <= 0xFF);
      uint32_t cpt = printable ? byte : next_extra++;
      append_utf8(cpt, char_of_byte[byte]);
      byte_of_char[cpt] = static_cast<int16_t>(byte);
    }
  }
};

const Gpt2Alphabet& gpt2_alphabet() {
  static const Gpt2Alphabet alphabet;
  return alphabet;
}

}  // namespace

size_t utf8_sequence_length(uint8_t lead) {
  static constexpr uint8_t kByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kByHighNibble[lead >> 4];
}

void append_utf8(uint32_t cpt, std::string& out) {
  if (cpt > 0x10FFFF) cpt = kReplacementChar;
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

size_t decode_utf8(std::string_view text, size_t pos, uint32_t& cpt) {
  if (pos >= text.size()) return 0;
  Prefix prefix = well_formed_prefix(text, pos);
  if (!prefix.complete) return 0;
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(text[pos + i])); };
  switch (prefix.length) {
    case 1: cpt = byte(0); break;
    case 2: cpt = ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F); break;
    case 3: cpt = ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F); break;
    default:
      cpt = ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
            (byte(3) & 0x3F);
  }
  return prefix.length;
}

std::string replace_invalid_utf8_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    Prefix prefix = well_formed_prefix(text, pos);
    if (prefix.complete) {
      out.append(text.substr(pos, prefix.length));
      pos += prefix.length;
    } else {
      append_utf8(kReplacementChar, out);
      ++pos;
    }
  }
  return out;
}

size_t append_valid_utf8(std::string_view bytes, bool final, std::string& out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    Prefix prefix = well_formed_prefix(bytes, pos);
    if (prefix.complete) {
      out.append(bytes.substr(pos, prefix.length));
      pos += prefix.length;
      continue;
    }
    bool may_still_complete = prefix.length > 0 && pos + prefix.length == bytes.size();
    if (may_still_complete && !final) break;
    append_utf8(kReplacementChar, out);
    pos += prefix.length > 0 ? prefix.length : 1;
  }
  return pos;
}

std::string_view gpt2_char_of_byte(uint8_t byte) { return gpt2_alphabet().char_of_byte[byte]; }

std::optional<uint8_t> gpt2_byte_of_char(uint32_t cpt) {
  const auto& table = gpt2_alphabet().byte_of_char;
  if (cpt >= table.size() || table[cpt] < 0) return std::nullopt;
  return static_cast<uint8_t>(table[cpt]);
}

}  // namespace omni::model
