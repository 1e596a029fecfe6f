// UTF-8 and byte-level helpers shared by the tokenizers.
//
// Tokenizers see arbitrary bytes: these functions never fail and never read past their input. Where
// bytes are not well-formed UTF-8 each function says what it does with them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace omni::model {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the UTF-8 sequence that starts with `lead`, judged from its top four bits alone (1 for
// ASCII, continuation and invalid bytes). This is how SentencePiece and byte-level BPE cut text
// into initial symbols; callers clamp it to the bytes that remain.
size_t utf8_sequence_length(uint8_t lead);

// Appends the UTF-8 encoding of `cpt`; code points above U+10FFFF append U+FFFD.
void append_utf8(uint32_t cpt, std::string& out);

// Decodes the well-formed UTF-8 character at text[pos] into `cpt` and returns its length in bytes,
// or returns 0 where the bytes there are not a well-formed character (overlong forms, surrogates
// and code points above U+10FFFF included).
size_t decode_utf8(std::string_view text, size_t pos, uint32_t& cpt);

// `text` with every byte that is not part of a well-formed character replaced by U+FFFD, one per
// byte (what llama.cpp does before pre-tokenizing), so the result is valid UTF-8.
std::string replace_invalid_utf8_bytes(std::string_view text);

// Appends the well-formed characters of `bytes` to `out`, each maximal ill-formed subsequence
// replaced by one U+FFFD (the Unicode "maximal subpart" practice, as Python's errors="replace").
// Returns how many bytes were consumed: all of them when `final`; otherwise a trailing sequence
// that may still complete into a character is left unconsumed for the caller to extend.
size_t append_valid_utf8(std::string_view bytes, bool final, std::string& out);

// GPT-2's byte-level alphabet: each byte is shown as a printable code point (printable Latin-1
// bytes as themselves, the other 68 as U+0100..U+0143 in byte order), so any byte string is a
// string of visible characters.
std::string_view gpt2_char_of_byte(uint8_t byte);
// The byte a GPT-2 alphabet code point stands for; nullopt for code points outside the alphabet.
std::optional<uint8_t> gpt2_byte_of_char(uint32_t cpt);

}  // namespace omni::model
