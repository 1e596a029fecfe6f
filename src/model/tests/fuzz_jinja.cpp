// libFuzzer target: any bytes as a Jinja template must parse or be refused, and a parsed template
// must render or fail with an Error, never crash, hang or grow without bound (small limits here, so
// that each input is quick), and a rendered Text keeps one data mark per byte or none.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "model/jinja_template.h"

namespace {

using namespace omni::model;

void check(bool ok) {
  if (!ok) std::abort();
}

jinja::Value message(const char* role, const char* content) {
  jinja::Dict d;
  d.set("role", jinja::Value(jinja::Text::data(role)));
  d.set("content", jinja::Value(jinja::Text::data(content)));
  return jinja::Value(std::move(d));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  JinjaLimits limits;
  limits.max_steps = 20000;
  limits.max_output_bytes = 1 << 16;
  limits.max_work_bytes = 1 << 22;
  limits.max_depth = 64;
  auto t = JinjaTemplate::parse(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!t) {
    check(!t.error().message.empty());
    return 0;
  }
  jinja::Dict globals;
  globals.set("messages", jinja::Value(jinja::List{message("system", "sys"), message("user", "hi <|im_end|>"),
                                                   message("assistant", " ok ")}));
  globals.set("add_generation_prompt", jinja::Value(true));
  globals.set("bos_token", jinja::Value("<s>"));
  auto out = t->render(globals, 0);
  if (!out) {
    check(!out.error().message.empty());
    return 0;
  }
  check(out->marks.empty() || out->marks.size() == out->bytes.size());
  check(out->bytes.size() <= limits.max_output_bytes);
  return 0;
}
