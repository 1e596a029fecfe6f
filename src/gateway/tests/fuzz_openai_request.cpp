// libFuzzer target: any bytes as the JSON body of /v1/chat/completions, /v1/completions and
// /v1/embeddings must be parsed or refused, never crash, hang or throw, and:
//   - a refusal is a 4xx with a message, as the API documents;
//   - an accepted request respects the limits the parser promises (stop strings, messages, finite
//     sampling values in range, max_tokens >= 1), whatever the nesting or the numbers sent;
//   - json_nesting_depth never reports less than the limit for a body the parser found too deep.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/openai_request.h"

namespace {

using namespace omni::gateway;

void check(bool ok) {
  if (!ok) std::abort();
}

void check_params(const GenerationParams& p) {
  check(!p.max_tokens || *p.max_tokens >= 1);
  check(p.stop.size() <= kMaxStopStrings);
  for (const auto& s : p.stop) check(s.size() <= kMaxStopLength);
  const auto& s = p.sampling;
  for (float v : {s.temperature, s.top_p, s.min_p, s.repeat_penalty, s.frequency_penalty, s.presence_penalty})
    check(std::isfinite(v));
  check(s.top_p >= 0.0f && s.top_p <= 1.0f);
  check(s.min_p >= 0.0f && s.min_p <= 1.0f);
  check(s.repeat_penalty > 0.0f);
}

template <class T>
void check_refusal(const ApiResult<T>& r) {
  check(r.error().status >= 400 && r.error().status < 500);
  check(!r.error().message.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const int depth = json_nesting_depth(body, kMaxJsonDepth);
  check(depth >= 0 && depth <= kMaxJsonDepth + 1);

  auto chat = parse_chat_request(body);
  if (chat) {
    check(depth <= kMaxJsonDepth);
    check(!chat->messages.empty() && chat->messages.size() <= kMaxMessages);
    check_params(chat->params);
  } else {
    check_refusal(chat);
  }
  auto completion = parse_completion_request(body);
  if (completion) {
    check(depth <= kMaxJsonDepth);
    check_params(completion->params);
    check(!completion->prompts.empty() && completion->prompts.size() <= kMaxPrompts);
    check(completion->prompts.size() * static_cast<size_t>(completion->params.n) <= kMaxChoicesPerRequest);
  } else {
    check_refusal(completion);
  }
  auto embedding = parse_embedding_request(body);
  if (embedding) {
    check(depth <= kMaxJsonDepth);
    check(!embedding->inputs.empty() && embedding->inputs.size() <= kMaxEmbeddingInputs);
  } else {
    check_refusal(embedding);
  }
  return 0;
}
