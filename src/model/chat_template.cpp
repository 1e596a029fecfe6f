#include "model/chat_template.h"

#include <algorithm>
#include <ctime>

namespace omni::model {
namespace {

using Messages = std::span<const ChatMessage>;

// The formats' names, in the order of ChatTemplate::Format.
constexpr std::string_view kNames[] = {"chatml",  "llama2",      "llama3",     "llama3.1",
                                       "mistral", "mistral-v1",  "mistral-v3", "mistral-v3-tekken",
                                       "phi3",    "phi3-legacy", "gemma",      "gemma3",
                                       "zephyr"};

std::string known_names() {
  std::string out;
  for (std::string_view n : kNames) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

constexpr std::string_view kAlternate =
    "Conversation roles must alternate user/assistant/user/assistant/...";
constexpr std::string_view kMistralAlternate =
    "After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...";
constexpr std::string_view kMistralRoles =
    "Only user and assistant roles are supported, with the exception of an initial optional "
    "system message!";

// The code point that starts at s[i] and its length; length 0 if the bytes there are not UTF-8.
std::pair<char32_t, size_t> decode_at(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1};
  const size_t len = b >= 0xF8 ? 0 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (len == 0 || i + len > s.size()) return {0, 0};
  char32_t c = b & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    const auto cont = static_cast<unsigned char>(s[i + k]);
    if ((cont & 0xC0) != 0x80) return {0, 0};
    c = (c << 6) | (cont & 0x3F);
  }
  constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMin[len]) return {0, 0};  // overlong
  return {c, len};
}

// Python's str.isspace(), which Jinja's trim filter and str.strip() go by.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.rstrip() with no argument.
std::string_view rstrip(std::string_view s) {
  const size_t begin = 0;
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && end - start < 4 &&
           (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
      --start;
    }
    const auto [c, len] = decode_at(s, start);
    if (len != end - start || !is_space(c)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// Python's str.strip() with no argument.
std::string_view strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const auto [c, len] = decode_at(s, begin);
    if (len == 0 || !is_space(c)) break;
    begin += len;
  }
  return rstrip(s.substr(begin));
}

// The prompt being rendered: `out += text` is the template's own text, out.message(text) text
// from a message.
class Out {
 public:
  explicit Out(std::string_view bos) { add(bos, false); }
  Out& operator+=(std::string_view markup) {
    add(markup, false);
    return *this;
  }
  Out& message(std::string_view text) {
    add(text, true);
    return *this;
  }
  ChatPrompt take() { return std::move(prompt_); }

 private:
  void add(std::string_view text, bool from_message) {
    if (text.empty()) return;
    auto& segments = prompt_.segments;
    if (!segments.empty() && segments.back().from_message == from_message) segments.back().text += text;
    else segments.push_back({std::string(text), from_message});
  }
  ChatPrompt prompt_;
};

// Undoes the escapes of a Jinja string literal's body.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char e = s[++i];
      out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Qwen's templates write their default system turn as one string literal,
// '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n', while the turn built from the
// conversation's own system message closes the literal right after the marker. So: the text
// between "<|im_start|>system\n" and "<|im_end|>" inside a single literal, if there is one.
std::string chatml_default_system(std::string_view src) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  for (size_t at = src.find(kOpen); at != std::string_view::npos; at = src.find(kOpen, at + 1)) {
    size_t begin = at + kOpen.size();
    if (src.substr(begin, 2) == "\\n") {
      begin += 2;
    } else if (src.substr(begin, 1) == "\n") {
      begin += 1;
    } else {
      continue;
    }
    const size_t end = src.find("<|im_end|>", begin);
    if (end == std::string_view::npos) break;
    const std::string_view body = src.substr(begin, end - begin);
    bool one_literal = !body.empty() && body.find_first_of("{}") == std::string_view::npos;
    for (size_t i = 0; i < body.size() && one_literal; ++i) {
      if (body[i] == '\\')
        ++i;
      else if (body[i] == '\'' || body[i] == '"')
        one_literal = false;
    }
    if (one_literal) return unescape(body);
  }
  return {};
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &local);
  return buf;
}

// The first ~80 characters of a template, on one line, for an error message.
std::string quote_start(std::string_view src) {
  size_t n = std::min<size_t>(src.size(), 80);
  while (n < src.size() && n > 0 && (static_cast<unsigned char>(src[n]) & 0xC0) == 0x80) --n;
  std::string out = "\"";
  for (char c : src.substr(0, n)) {
    if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
  out += n < src.size() ? "...\"" : "\"";
  return out;
}

// Each renderer below mirrors its reference template statement by statement; the comment above it
// is the template's logic, and an Error's text is the template's raise_exception() message.

// for m: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n'; the default system turn first
// when messages[0] is not a system message; then '<|im_start|>assistant\n' if prompted.
ChatPrompt chatml(Messages ms, bool gen, std::string_view bos, std::string_view default_system) {
  Out out(bos);
  if (!default_system.empty() && ms[0].role != "system") {
    out += "<|im_start|>system\n";
    out += default_system;
    out += "<|im_end|>\n";
  }
  for (const ChatMessage& m : ms) {
    out += "<|im_start|>" + m.role + "\n";
    out.message(m.content);
    out += "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out.take();
}

// A leading system message is folded into the first user turn as <<SYS>>...<</SYS>>; user turns
// are bos + '[INST] ' + strip() + ' [/INST]', assistant turns ' ' + strip() + ' ' + eos. No
// generation prompt: the text already ends where the assistant starts.
Result<ChatPrompt> llama2(Messages ms, std::string_view bos, std::string_view eos) {
  const bool has_system = ms[0].role == "system";
  const std::string system = has_system ? ms[0].content : "";
  if (has_system) ms = ms.subspan(1);
  Out out("");
  // strip() of "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content: nothing at the start, and at the
  // end the content's trailing space, or with it the markup's when the content is only space.
  auto with_system = [&](std::string_view content) {
    const std::string_view kept = rstrip(content);
    out += "<<SYS>>\n";
    out.message(system);
    out += kept.empty() ? "\n<</SYS>>" : "\n<</SYS>>\n\n";
    out.message(kept);
  };
  for (size_t i = 0; i < ms.size(); ++i) {
    if ((ms[i].role == "user") != (i % 2 == 0)) return Error{ErrorCode::InvalidArgument, std::string(kAlternate)};
    if (ms[i].role == "user") {
      out += bos;
      out += "[INST] ";
      if (i == 0 && has_system) with_system(ms[i].content);
      else out.message(strip(ms[i].content));
      out += " [/INST]";
    } else if (ms[i].role == "assistant") {
      out += " ";
      out.message(strip(ms[i].content));
      out += " ";
      out += eos;
    }
  }
  return out.take();
}

// bos on the first turn; each turn '<|start_header_id|>' + role + '<|end_header_id|>\n\n' +
// content|trim + '<|eot_id|>'.
ChatPrompt llama3(Messages ms, bool gen, std::string_view bos) {
  Out out(bos);
  for (const ChatMessage& m : ms) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
    out.message(strip(m.content));
    out += "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out.take();
}

// As llama3, but a system turn always comes first: the knowledge cutoff and date lines, then the
// conversation's system message (trimmed), if any.
ChatPrompt llama31(Messages ms, bool gen, std::string_view bos, std::string_view date) {
  std::string system;
  if (ms[0].role == "system") {
    system = strip(ms[0].content);
    ms = ms.subspan(1);
  }
  Out out(bos);
  out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n";
  out += "Today Date: " + std::string(date) + "\n\n";
  out.message(system);
  out += "<|eot_id|>";
  for (const ChatMessage& m : ms) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
    out.message(strip(m.content));
    out += "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out.take();
}

// bos; user '[INST] ' + content + ' [/INST]', assistant content + eos (+ ' ' in the first
// v0.1 template); any other role is refused.
Result<ChatPrompt> mistral(Messages ms, std::string_view bos, std::string_view eos,
                           bool eos_space) {
  Out out(bos);
  for (size_t i = 0; i < ms.size(); ++i) {
    if ((ms[i].role == "user") != (i % 2 == 0)) return Error{ErrorCode::InvalidArgument, std::string(kAlternate)};
    if (ms[i].role == "user") {
      out += "[INST] ";
      out.message(ms[i].content);
      out += " [/INST]";
    } else if (ms[i].role == "assistant") {
      out.message(ms[i].content);
      out += std::string(eos) + (eos_space ? " " : "");
    } else {
      return Error{ErrorCode::InvalidArgument, "Only user and assistant roles are supported!"};
    }
  }
  return out.take();
}

// The "v1" template: bos; user ' [INST] ' + content + ' [/INST]', the system message (if first)
// prefixed to the first user turn with '\n\n'; assistant ' ' + content + eos.
Result<ChatPrompt> mistral_v1(Messages ms, std::string_view bos, std::string_view eos) {
  const bool has_system = ms[0].role == "system";
  const std::string system = has_system ? ms[0].content : "";
  if (has_system) ms = ms.subspan(1);
  Out out(bos);
  for (size_t i = 0; i < ms.size(); ++i) {
    if ((ms[i].role == "user") != (i % 2 == 0))
      return Error{ErrorCode::InvalidArgument, std::string(kMistralAlternate)};
    if (ms[i].role == "user") {
      out += " [INST] ";
      if (i == 0 && has_system) {
        out.message(system);
        out += "\n\n";
      }
      out.message(ms[i].content);
      out += " [/INST]";
    } else if (ms[i].role == "assistant") {
      out += " ";
      out.message(ms[i].content);
      out += eos;
    } else {
      return Error{ErrorCode::InvalidArgument, std::string(kMistralRoles)};
    }
  }
  return out.take();
}

// The "v3" templates: roles checked for alternation first; bos; the system message (if first) is
// prefixed to the LAST message if that is a user turn, and dropped otherwise. v3: user
// '[INST] ' + content + '[/INST]', assistant ' ' + content|trim + eos. Tekken: user '[INST]' +
// content + '[/INST]', assistant content + eos.
Result<ChatPrompt> mistral_v3(Messages ms, std::string_view bos, std::string_view eos,
                              bool tekken) {
  const bool has_system = ms[0].role == "system";
  const std::string system = has_system ? ms[0].content : "";
  if (has_system) ms = ms.subspan(1);
  for (size_t i = 0; i < ms.size(); ++i) {
    if ((ms[i].role == "user") != (i % 2 == 0))
      return Error{ErrorCode::InvalidArgument, std::string(kMistralAlternate)};
  }
  Out out(bos);
  for (size_t i = 0; i < ms.size(); ++i) {
    if (ms[i].role == "user") {
      out += tekken ? "[INST]" : "[INST] ";
      if (i + 1 == ms.size() && has_system) {
        out.message(system);
        out += "\n\n";
      }
      out.message(ms[i].content);
      out += "[/INST]";
    } else if (ms[i].role == "assistant") {
      if (tekken) {
        out.message(ms[i].content);
      } else {
        out += " ";
        out.message(strip(ms[i].content));
      }
      out += eos;
    } else {
      return Error{ErrorCode::InvalidArgument, std::string(kMistralRoles)};
    }
  }
  return out.take();
}

// '<|' + role + '|>\n' + content + '<|end|>\n' per message; then '<|assistant|>\n' if prompted,
// else eos where the template says so.
ChatPrompt phi3(Messages ms, bool gen, std::string_view bos, std::string_view eos,
                bool skip_empty_system, bool eos_without_prompt) {
  Out out(bos);
  for (const ChatMessage& m : ms) {
    if (skip_empty_system && m.role == "system" && m.content.empty()) continue;
    out += "<|" + m.role + "|>\n";
    out.message(m.content);
    out += "<|end|>\n";
  }
  if (gen) {
    out += "<|assistant|>\n";
  } else if (eos_without_prompt) {
    out += eos;
  }
  return out.take();
}

// User turns are '<|user|>\n' + content + '<|end|>\n<|assistant|>\n', assistant turns content +
// '<|end|>\n'; system messages are ignored.
ChatPrompt phi3_legacy(Messages ms, std::string_view bos) {
  Out out(bos);
  for (const ChatMessage& m : ms) {
    if (m.role == "user") {
      out += "<|user|>\n";
      out.message(m.content);
      out += "<|end|>\n<|assistant|>\n";
    } else if (m.role == "assistant") {
      out.message(m.content);
      out += "<|end|>\n";
    }
  }
  return out.take();
}

// bos; '<start_of_turn>' + role ('model' for assistant) + '\n' + content|trim + '<end_of_turn>\n'.
// Gemma refuses a system message; Gemma 3 prefixes it, + '\n\n', to the first turn.
Result<ChatPrompt> gemma(Messages ms, bool gen, std::string_view bos, bool gemma3) {
  const bool has_system = ms[0].role == "system";
  const std::string system = has_system ? ms[0].content : "";
  if (has_system) {
    if (!gemma3) return Error{ErrorCode::InvalidArgument, "System role not supported"};
    ms = ms.subspan(1);
  }
  Out out(bos);
  for (size_t i = 0; i < ms.size(); ++i) {
    if ((ms[i].role == "user") != (i % 2 == 0)) return Error{ErrorCode::InvalidArgument, std::string(kAlternate)};
    const std::string role = ms[i].role == "assistant" ? "model" : ms[i].role;
    out += "<start_of_turn>" + role + "\n";
    if (i == 0 && has_system) {
      out.message(system);
      out += "\n\n";
    }
    out.message(strip(ms[i].content));
    out += "<end_of_turn>\n";
  }
  if (gen) out += "<start_of_turn>model\n";
  return out.take();
}

// '<|' + role + '|>\n' + content + eos, and a newline after each message: the template's '}}\n'
// keeps it, while trim_blocks eats the newlines after its '%}' tags. '<|assistant|>\n' if prompted.
ChatPrompt zephyr(Messages ms, bool gen, std::string_view bos, std::string_view eos) {
  Out out(bos);
  for (const ChatMessage& m : ms) {
    out += "<|" + m.role + "|>\n";
    out.message(m.content);
    out += std::string(eos) + "\n";
  }
  if (gen) out += "<|assistant|>\n";
  return out.take();
}

}  // namespace

Result<ChatTemplate> ChatTemplate::detect(std::string_view src, std::string_view bos_token,
                                          std::string_view eos_token) {
  if (src.empty()) {
    return Error{ErrorCode::NotFound, "the chat template is empty; choose a format by name (" + known_names() + ")"};
  }
  auto has = [&](std::string_view marker) { return src.find(marker) != std::string_view::npos; };
  auto unrecognized = [&] {
    return Error{ErrorCode::InvalidArgument, "unrecognized chat template " + quote_start(src) +
                                                 "; choose a format by name (" + known_names() + ")"};
  };

  Format format;
  if (has("<|im_start|>")) {
    if (has("<|im_sep|>")) return unrecognized();  // Phi-4: ChatML markers, another layout
    format = Format::ChatML;
  } else if (has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return unrecognized();  // Mistral v7
    if (has("<<SYS>>")) {
      format = Format::Llama2;
    } else if (has("' [INST] '")) {
      format = Format::MistralV1;
    } else if (has("[AVAILABLE_TOOLS]") || has("loop.last and system_message")) {
      format = has("\"[INST] \"") || has("'[INST] '") ? Format::MistralV3 : Format::MistralV3Tekken;
    } else {
      format = Format::Mistral;
    }
  } else if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
    format = has("Cutting Knowledge Date") ? Format::Llama31 : Format::Llama3;
  } else if (has("<start_of_turn>")) {
    format = has("first_user_prefix") ? Format::Gemma3 : Format::Gemma;
  } else if (has("<|end|>") && (has("<|user|>") || has("'<|' + message['role'] + '|>'"))) {
    // The first Phi-3 template never looks at add_generation_prompt.
    format = has("add_generation_prompt") ? Format::Phi3 : Format::Phi3Legacy;
  } else if (has("'<|user|>\\n' + message['content'] + eos_token") ||
             has("'<|user|>\n' + message['content'] + eos_token")) {
    format = Format::Zephyr;
  } else {
    return unrecognized();
  }

  ChatTemplate t(format, has("bos_token") ? std::string(bos_token) : "", std::string(eos_token));
  switch (format) {
    case Format::ChatML:
      t.default_system_ = chatml_default_system(src);
      break;
    case Format::Llama3:
      t.always_prompt_ = !has("add_generation_prompt");
      break;
    case Format::Llama31:
      t.today_ = has("strftime_now");
      break;
    case Format::Mistral:
      t.assistant_eos_space_ = has("eos_token + ' '");
      break;
    case Format::Phi3:
      t.skip_empty_system_ = has("'system' and message['content']");
      t.eos_without_prompt_ = has("eos_token");
      break;
    default:
      break;
  }
  return t;
}

Result<ChatTemplate> ChatTemplate::by_name(std::string_view name, std::string_view bos_token,
                                           std::string_view eos_token) {
  const auto it = std::find(std::begin(kNames), std::end(kNames), name);
  if (it == std::end(kNames)) {
    return Error{ErrorCode::InvalidArgument, "unknown chat template name \"" + std::string(name) +
                 "\" (known: " + known_names() + ")"};
  }
  const auto format = static_cast<Format>(it - std::begin(kNames));
  // Which reference templates write bos_token.
  const bool writes_bos =
      format != Format::ChatML && format != Format::Phi3 && format != Format::Zephyr;
  ChatTemplate t(format, writes_bos ? std::string(bos_token) : "", std::string(eos_token));
  t.eos_without_prompt_ = format == Format::Phi3;
  return t;
}

std::string_view ChatTemplate::name() const {
  static_assert(std::size(kNames) == static_cast<size_t>(Format::Zephyr) + 1);
  return kNames[static_cast<size_t>(format_)];
}

std::vector<std::string> ChatTemplate::stop_strings() const {
  std::vector<std::string> out;
  switch (format_) {
    case Format::ChatML:
      out.push_back("<|im_end|>");
      break;
    case Format::Llama3:
    case Format::Llama31:
      out.push_back("<|eot_id|>");
      break;
    case Format::Phi3:
    case Format::Phi3Legacy:
      out.push_back("<|end|>");
      break;
    case Format::Gemma:
    case Format::Gemma3:
      out.push_back("<end_of_turn>");
      break;
    default:
      break;  // the turn ends with EOS
  }
  if (!eos_.empty() && std::find(out.begin(), out.end(), eos_) == out.end()) out.push_back(eos_);
  return out;
}

std::string ChatPrompt::text() const {
  std::string out;
  for (const ChatSegment& s : segments) out += s.text;
  return out;
}

Result<std::string> ChatTemplate::apply(std::span<const ChatMessage> ms, bool gen) const {
  auto prompt = render(ms, gen);
  if (!prompt) return prompt.error();
  return prompt->text();
}

Result<ChatPrompt> ChatTemplate::render(std::span<const ChatMessage> ms, bool gen) const {
  auto fail = [&](const std::string& what) {
    return Error{ErrorCode::InvalidArgument, "chat template " + std::string(name()) + ": " + what};
  };
  if (ms.empty()) return fail("no messages");
  for (const ChatMessage& m : ms) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return fail("role \"" + m.role + "\" is not supported");
    }
  }
  Result<ChatPrompt> out = [&]() -> Result<ChatPrompt> {
    switch (format_) {
      case Format::ChatML:
        return chatml(ms, gen, bos_, default_system_);
      case Format::Llama2:
        return llama2(ms, bos_, eos_);
      case Format::Llama3:
        return llama3(ms, gen || always_prompt_, bos_);
      case Format::Llama31:
        return llama31(ms, gen, bos_, today_ ? today() : "26 Jul 2024");
      case Format::Mistral:
        return mistral(ms, bos_, eos_, assistant_eos_space_);
      case Format::MistralV1:
        return mistral_v1(ms, bos_, eos_);
      case Format::MistralV3:
        return mistral_v3(ms, bos_, eos_, false);
      case Format::MistralV3Tekken:
        return mistral_v3(ms, bos_, eos_, true);
      case Format::Phi3:
        return phi3(ms, gen, bos_, eos_, skip_empty_system_, eos_without_prompt_);
      case Format::Phi3Legacy:
        return phi3_legacy(ms, bos_);
      case Format::Gemma:
        return gemma(ms, gen, bos_, false);
      case Format::Gemma3:
        return gemma(ms, gen, bos_, true);
      case Format::Zephyr:
        return zephyr(ms, gen, bos_, eos_);
    }
    return Error{ErrorCode::Internal, "unknown format"};  // not reached: the switch covers every Format
  }();
  if (!out.ok()) return fail(out.error().message);
  return out;
}

}  // namespace omni::model
