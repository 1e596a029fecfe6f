// What Jinja expressions do to values: operators, attribute and item access, filters, tests, the
// methods of str/list/dict the sandbox allows, and the global functions (range, namespace,
// raise_exception, strftime_now, dict), each as jinja2 under transformers does it. Internal to
// JinjaTemplate: failures are thrown as Failure and become an Error at JinjaTemplate::render().
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "model/jinja_value.h"

namespace omni::model::jinja {

struct Failure {
  ErrorCode code;
  std::string message;
  int line = 0, col = 0;
};

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

// What builtins need from the render in progress: its budgets, its clock, and calling back into
// template code (macros passed to map/select are not supported, but caller() and loop.cycle are).
class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual void step() = 0;                 // one unit of work; throws past the step limit
  virtual void charge(size_t bytes) = 0;   // bytes created; throws past the work limit
  virtual std::time_t now() const = 0;
  virtual Value call(const Value& fn, Args& args) = 0;
};

struct Function {
  std::string name;
  std::function<Value(Runtime&, Args&)> call;
};

std::vector<std::pair<std::string, std::shared_ptr<Function>>> global_functions();

std::string undefined_message(const Value& v);
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(Runtime& rt, const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop,
            std::optional<int64_t> step);
// The items a for loop visits: a list's items, a dict's keys, a string's characters; none for
// Undefined. Anything else is a Failure.
List iterate(const Value& v);
Value binary_op(Runtime& rt, const std::string& op, const Value& l, const Value& r);
bool compare_op(const std::string& op, const Value& l, const Value& r);
Value apply_filter(Runtime& rt, const std::string& name, Args& args);
bool apply_test(Runtime& rt, const std::string& name, Args& args);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson calls it;
// `indent` empty for none (a number of spaces or the indent string itself).
Text to_json(Runtime& rt, const Value& v, bool ensure_ascii, std::optional<std::string> indent, bool sort_keys,
             std::optional<std::pair<std::string, std::string>> separators = std::nullopt);

}  // namespace omni::model::jinja
