// JinjaTemplate: a Jinja2 template, parsed once and rendered with jinja2's semantics as transformers'
// apply_chat_template configures them: an ImmutableSandboxedEnvironment (lists and dicts cannot be
// changed; namespace() objects can), trim_blocks and lstrip_blocks on, the loopcontrols extension
// (break, continue), transformers' tojson (ensure_ascii off, no HTML escaping, indent and
// separators and sort_keys as json.dumps takes them), raise_exception(message), strftime_now(format)
// and the {% generation %} block, and jinja2's default Undefined (printing it gives "", using it
// further is an error). Chat templates are the purpose; include, extends, import, autoescape and
// recursive loops are not supported (a syntax error says so).
//
// Bounded: a render stops with ResourceExhausted once its output, the bytes it creates, its steps
// (statements, loop iterations, calls) or its call depth pass Limits, so no template loops forever
// or grows without bound. Errors are values: InvalidArgument for a syntax error or a failure in the
// template (raise_exception's message verbatim, an undefined value used, a type error), with the
// line and column where the template says where.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <string_view>

#include "base/result.h"
#include "model/jinja_value.h"

namespace omni::model {

namespace jinja {
struct Node;
}

struct JinjaLimits {
  size_t max_output_bytes = 32u << 20;
  size_t max_work_bytes = 256u << 20;  // all strings and lists a render creates, together
  uint64_t max_steps = 5'000'000;
  int max_depth = 100;  // nesting in the source, and macro calls at render time
};

class JinjaTemplate {
 public:
  static Result<JinjaTemplate> parse(std::string_view source, const JinjaLimits& limits = {});

  // The output for `globals` (the template's variables, e.g. messages, add_generation_prompt);
  // data-marked strings among them keep their marks in the output (jinja::Text). `now` is the
  // time strftime_now() formats, in local time.
  Result<jinja::Text> render(const jinja::Dict& globals, std::time_t now) const;

 private:
  struct Parsed;
  explicit JinjaTemplate(std::shared_ptr<const Parsed> p) : p_(std::move(p)) {}
  std::shared_ptr<const Parsed> p_;
};

}  // namespace omni::model
