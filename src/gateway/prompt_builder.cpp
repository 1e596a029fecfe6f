#include "gateway/prompt_builder.h"

#include <ctime>

namespace omni::gateway {

Result<PromptBuilder> PromptBuilder::create(const model::Tokenizer& tokenizer, const std::string& model_template_source,
                                            const std::string& template_name, const std::string& fallback_template) {
  auto text_of = [&](std::optional<model::TokenId> id) {
    return id ? tokenizer.token_to_piece(*id, /*render_special=*/true) : std::string();
  };
  const std::string bos = text_of(tokenizer.bos()), eos = text_of(tokenizer.eos());
  Result<model::PromptTemplate> tmpl = Error{ErrorCode::NotFound, "no chat template"};
  if (!template_name.empty()) {
    tmpl = model::PromptTemplate::builtin(template_name, bos, eos);
  } else if (!model_template_source.empty()) {
    tmpl = model::PromptTemplate::jinja(model_template_source, bos, eos);
    if (!tmpl && !fallback_template.empty()) tmpl = model::PromptTemplate::builtin(fallback_template, bos, eos);
  } else if (!fallback_template.empty()) {
    tmpl = model::PromptTemplate::builtin(fallback_template, bos, eos);
  }
  if (!tmpl) return tmpl.error();
  return PromptBuilder(tokenizer, std::move(*tmpl));
}

bool PromptBuilder::too_long(size_t bytes, size_t budget) const {
  return budget < SIZE_MAX / tokenizer_.max_token_bytes() && bytes > budget * tokenizer_.max_token_bytes();
}

Result<Prompt> PromptBuilder::chat(std::span<const model::ChatMessage> messages, size_t budget) const {
  auto rendered = template_.render(messages, /*add_generation_prompt=*/true);
  if (!rendered) return rendered.error();
  return tokenize(*rendered, budget);
}

Result<Prompt> PromptBuilder::chat(const model::ChatInput& input, size_t budget) const {
  auto rendered = template_.render(input, std::time(nullptr));
  if (!rendered) return rendered.error();
  return tokenize(*rendered, budget);
}

Result<Prompt> PromptBuilder::tokenize(const model::ChatPrompt& rendered, size_t budget) const {
  Prompt p;
  p.stops = template_.stop_strings();
  size_t bytes = 0;
  std::vector<model::TextSpan> spans;
  spans.reserve(rendered.segments.size());
  for (const model::ChatSegment& s : rendered.segments) {
    spans.push_back({s.text, /*special=*/!s.from_message});
    bytes += s.text.size();
  }
  if (too_long(bytes, budget)) {
    p.over_budget = true;
    return p;
  }
  // A template that writes BOS itself must not get a second one from the tokenizer.
  p.tokens = tokenizer_.encode(spans, /*add_special=*/!template_.writes_bos(rendered), budget);
  p.over_budget = p.tokens.size() > budget;
  return p;
}

Prompt PromptBuilder::completion(const std::string& text, size_t budget) const {
  Prompt p;
  if (too_long(text.size(), budget)) {
    p.over_budget = true;
    return p;
  }
  p.tokens = tokenizer_.encode(text, /*add_special=*/true, /*parse_special=*/false, budget);
  p.over_budget = p.tokens.size() > budget;
  return p;
}

}  // namespace omni::gateway
