#include "gateway/request_framer.h"

#include <algorithm>
#include <vector>

namespace omni::gateway {
namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// A field value's bytes: visible ASCII, space, tab and obs-text; no other control byte.
bool is_field_byte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
         });
}

// The comma-separated elements of a list field value, trimmed (empty ones kept).
std::vector<std::string_view> list_elements(std::string_view value) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    const size_t comma = value.find(',', start);
    out.push_back(trim_ows(value.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

RequestFramer::RequestFramer(FramingLimits limits) : limits_(limits) {}

size_t RequestFramer::feed(std::string_view bytes) {
  size_t taken = 0;
  while (taken < bytes.size() && state_ == State::NeedMore) {
    const std::string_view rest = bytes.substr(taken);
    switch (phase_) {
      case Phase::Head:
        taken += feed_head(rest);
        break;
      case Phase::LengthBody:
      case Phase::ChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(rest.size(), left_));
        request_.body.append(rest.data(), n);
        left_ -= n;
        taken += n;
        if (left_ == 0) {
          if (phase_ == Phase::LengthBody) complete();
          else phase_ = Phase::ChunkDataEnd;
        }
        break;
      }
      case Phase::ChunkDataEnd: {
        // Exactly CRLF after a chunk's data.
        const char c = rest.front();
        ++taken;
        if (!after_cr_ && c == '\r') {
          after_cr_ = true;
        } else if (after_cr_ && c == '\n') {
          after_cr_ = false;
          phase_ = Phase::ChunkLine;
        } else {
          fail(400, "a chunk's data is not followed by CRLF (its size is wrong)");
        }
        break;
      }
      case Phase::ChunkLine:
        taken += feed_chunk_line(rest);
        break;
      case Phase::Trailers:
        taken += feed_trailers(rest);
        break;
    }
  }
  return taken;
}

size_t RequestFramer::feed_head(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (++head_bytes_ > limits_.head.max_head_bytes) {
      fail(431, "the request head is over the limit of " + std::to_string(limits_.head.max_header_lines) +
                    " header lines or " + std::to_string(limits_.head.max_head_bytes) + " bytes");
      return i + 1;
    }
    if (c == '\0') {
      fail(400, "the request head contains a NUL byte");
      return i + 1;
    }
    head_.push_back(c);
    if (after_cr_) {
      after_cr_ = false;
      if (c != '\n') {
        fail(400, "the request head contains a CR not followed by LF");
        return i + 1;
      }
      if (head_.size() - line_start_ == 2) {  // an empty line
        if (line_start_ == 0) {
          head_.clear();  // blank lines before a request line are ignored (RFC 9112 2.2)
          continue;
        }
        parse_head();
        return i + 1;
      }
      if (line_start_ > 0 && ++head_lines_ > limits_.head.max_header_lines) {
        fail(431, "the request head is over the limit of " + std::to_string(limits_.head.max_header_lines) +
                      " header lines or " + std::to_string(limits_.head.max_head_bytes) + " bytes");
        return i + 1;
      }
      line_start_ = head_.size();
    } else if (c == '\r') {
      after_cr_ = true;
    } else if (c == '\n') {
      fail(400, "the request head contains a line ending in LF without CR");
      return i + 1;
    } else {
      started_ = true;
    }
  }
  return bytes.size();
}

void RequestFramer::parse_head() {
  std::vector<std::string_view> lines;
  const std::string_view head(head_);
  for (size_t start = 0; start + 2 < head.size();) {
    const size_t end = head.find("\r\n", start);
    lines.push_back(head.substr(start, end - start));
    start = end + 2;
  }

  // request-line = method SP request-target SP HTTP-version
  const std::string_view line = lines.front();
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(400, "the request line is not METHOD TARGET VERSION");
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "the request method is not a token");
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    return fail(400, "the request target is empty or has a byte that is not visible ASCII");
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) || version[6] != '.' ||
      !digit(version[7]))
    return fail(400, "the request line does not end in an HTTP version");
  const bool http10 = version == "HTTP/1.0";
  if (!http10 && version != "HTTP/1.1") return fail(505, std::string(version) + " is not supported (HTTP/1.1 is)");

  std::string normalized(line);
  normalized += "\r\n";
  size_t content_lengths = 0, hosts = 0;
  uint64_t content_length = 0;
  bool has_transfer_encoding = false, close = false, keep_alive_asked = false;
  std::string transfer_encoding;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view field = lines[i];
    if (is_ows(field.front())) return fail(400, "a header line is folded (obs-fold)");
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos) return fail(400, "a header line has no colon");
    const std::string_view name = field.substr(0, colon);
    if (!is_token(name))
      return fail(400, "a header name is empty or has whitespace or a byte that is not a token character");
    const std::string_view value = trim_ows(field.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), [](char c) { return is_field_byte(static_cast<unsigned char>(c)); }))
      return fail(400, "the header " + std::string(name) + " has a control byte");
    if (iequals(name, "Content-Length")) {
      ++content_lengths;
      if (value.empty() || value.size() > 19 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return fail(400, "Content-Length is not one decimal number of at most 19 digits");
      content_length = 0;
      for (char c : value) content_length = content_length * 10 + static_cast<uint64_t>(c - '0');
      continue;
    }
    if (iequals(name, "Transfer-Encoding")) {
      if (has_transfer_encoding) transfer_encoding += ',';
      transfer_encoding += value;
      has_transfer_encoding = true;
      continue;
    }
    if (iequals(name, "Expect")) {
      expects_continue_ = !http10 && iequals(value, "100-continue");
      continue;  // answered here (see expects_continue()), never by httplib
    }
    if (iequals(name, "Host")) ++hosts;
    if (iequals(name, "Connection"))
      for (std::string_view option : list_elements(value)) {
        close = close || iequals(option, "close");
        keep_alive_asked = keep_alive_asked || iequals(option, "keep-alive");
      }
    normalized.append(name);
    normalized += ": ";
    normalized.append(value);
    normalized += "\r\n";
  }

  if (content_lengths > 1) return fail(400, "the request has more than one Content-Length");
  if (has_transfer_encoding && content_lengths > 0)
    return fail(400, "the request has both Content-Length and Transfer-Encoding");
  if (has_transfer_encoding && http10) return fail(400, "Transfer-Encoding is not allowed in HTTP/1.0");
  if (!http10 && hosts != 1) return fail(400, "an HTTP/1.1 request needs exactly one Host header");
  if (http10 && hosts > 1) return fail(400, "the request has more than one Host header");
  if (has_transfer_encoding) {
    const std::vector<std::string_view> codings = list_elements(transfer_encoding);
    if (!iequals(codings.back(), "chunked"))
      return fail(400, "the last transfer coding is not chunked, so the body's end cannot be found");
    for (size_t i = 0; i + 1 < codings.size(); ++i) {
      if (codings[i].empty() || iequals(codings[i], "chunked"))
        return fail(400, "Transfer-Encoding has an empty coding or chunked twice");
      return fail(501, "the transfer coding " + std::string(codings[i]) + " is not supported (only chunked is)");
    }
  }
  if (content_length > limits_.max_body_bytes)
    return fail(413, "the body of " + std::to_string(content_length) + " bytes is over the limit of " +
                         std::to_string(limits_.max_body_bytes));

  request_.head = std::move(normalized);
  request_.keep_alive = http10 ? keep_alive_asked && !close : !close;
  head_.clear();
  head_.shrink_to_fit();
  if (has_transfer_encoding) {
    phase_ = Phase::ChunkLine;
  } else {
    phase_ = Phase::LengthBody;
    left_ = content_length;
    if (left_ == 0) complete();
  }
}

size_t RequestFramer::feed_chunk_line(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c != '\n') {
        fail(400, "a chunk-size line contains a CR not followed by LF");
        return i + 1;
      }
      parse_chunk_size(line_);  // the phase moves on, or the request failed
      line_.clear();
      return i + 1;
    }
    if (c == '\r') {
      after_cr_ = true;
      continue;
    }
    if (c == '\n') {
      fail(400, "a chunk-size line ends in LF without CR");
      return i + 1;
    }
    if (line_.size() >= limits_.max_chunk_line_bytes) {
      fail(431, "a chunk-size line is over " + std::to_string(limits_.max_chunk_line_bytes) + " bytes");
      return i + 1;
    }
    line_.push_back(c);
  }
  return bytes.size();
}

// chunk-size [ BWS ";" extensions ]: hex digits, then nothing or (after optional whitespace) a ';'
// and extensions, which are ignored but may not hold control bytes.
void RequestFramer::parse_chunk_size(std::string_view line) {
  uint64_t size = 0;
  bool over = false;
  size_t i = 0;
  for (; i < line.size() && hex_value(line[i]) >= 0; ++i) {
    size = size * 16 + static_cast<uint64_t>(hex_value(line[i]));
    if (size > limits_.max_body_bytes) {
      over = true;
      size = limits_.max_body_bytes + 1;  // saturated: no overflow however many digits follow
    }
  }
  if (i == 0) {
    return fail(400, "a chunk-size line does not start with a hexadecimal size");
  }
  size_t j = i;
  while (j < line.size() && is_ows(line[j])) ++j;
  if (j < line.size() ? line[j] != ';' : j != i) {
    return fail(400, "a chunk size is followed by something other than extensions");
  }
  if (!std::all_of(line.begin() + static_cast<std::ptrdiff_t>(j), line.end(),
                   [](char c) { return is_field_byte(static_cast<unsigned char>(c)); })) {
    return fail(400, "a chunk extension has a control byte");
  }
  if (over || request_.body.size() + size > limits_.max_body_bytes) {
    return fail(413, "the chunked body is over the limit of " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  if (size == 0) {
    phase_ = Phase::Trailers;
    line_bytes_ = 0;
    trailer_bytes_ = 0;
  } else {
    phase_ = Phase::ChunkData;
    left_ = size;
  }
}

// Trailer lines are checked for framing (CRLF, no control bytes), counted, and dropped.
size_t RequestFramer::feed_trailers(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (++trailer_bytes_ > limits_.max_trailer_bytes) {
      fail(431, "the trailers are over " + std::to_string(limits_.max_trailer_bytes) + " bytes");
      return i + 1;
    }
    if (after_cr_) {
      after_cr_ = false;
      if (c != '\n') {
        fail(400, "a trailer contains a CR not followed by LF");
        return i + 1;
      }
      if (line_bytes_ == 0) {
        complete();
        return i + 1;
      }
      line_bytes_ = 0;
    } else if (c == '\r') {
      after_cr_ = true;
    } else if (!is_field_byte(c)) {
      fail(400, "a trailer has a control byte or a line ending in LF without CR");
      return i + 1;
    } else {
      ++line_bytes_;
    }
  }
  return bytes.size();
}

void RequestFramer::fail(int status, std::string reason) {
  state_ = State::Failed;
  error_ = {status, std::move(reason)};
}

void RequestFramer::complete() {
  request_.head += "Content-Length: " + std::to_string(request_.body.size()) + "\r\n\r\n";
  state_ = State::Complete;
}

FramedRequest RequestFramer::take() {
  FramedRequest out = std::move(request_);
  reset();
  return out;
}

void RequestFramer::reset() {
  state_ = State::NeedMore;
  phase_ = Phase::Head;
  error_ = {};
  started_ = false;
  head_.clear();
  head_bytes_ = head_lines_ = line_start_ = 0;
  after_cr_ = false;
  request_ = {};
  expects_continue_ = false;
  left_ = 0;
  line_.clear();
  line_bytes_ = trailer_bytes_ = 0;
}

}  // namespace omni::gateway
