#include "model/jinja_template.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

#include "model/jinja_builtins.h"
#include "model/jinja_syntax.h"

namespace omni::model {

using namespace jinja;

struct JinjaTemplate::Parsed {
  Body body;
  JinjaLimits limits;
};

Result<JinjaTemplate> JinjaTemplate::parse(std::string_view source, const JinjaLimits& limits) {
  auto body = parse_template(source, limits.max_depth);
  if (!body) return body.error();
  auto p = std::make_shared<Parsed>();
  p->body = std::move(*body);
  p->limits = limits;
  return JinjaTemplate(std::move(p));
}

namespace jinja {
namespace {

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  const Frame* parent = nullptr;

  const Value* find(std::string_view name) const {
    for (const Frame* f = this; f; f = f->parent)
      for (const auto& [k, v] : f->vars)
        if (k == name) return &v;
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

enum class Flow { Normal, Break, Continue };

class Renderer final : public Runtime {
 public:
  Renderer(const JinjaLimits& limits, std::time_t now) : limits_(limits), now_(now) {}

  Text run(const Body& body, const Dict& globals) {
    root_.vars.reserve(globals.items.size() + 8);
    install_globals();
    for (const auto& [k, v] : globals.items) root_.set(k, v);
    Text out;
    exec(body, root_, out);
    return out;
  }

  // Runtime:
  void step() override {
    if (++steps_ > limits_.max_steps)
      throw Failure{ErrorCode::ResourceExhausted, "template ran more than " + std::to_string(limits_.max_steps) + " steps"};
  }
  void charge(size_t bytes) override {
    work_ += bytes;
    if (work_ > limits_.max_work_bytes)
      throw Failure{ErrorCode::ResourceExhausted,
                    "template created more than " + std::to_string(limits_.max_work_bytes) + " bytes"};
  }
  std::time_t now() const override { return now_; }
  Value call(const Value& fn, Args& args) override {
    if (fn.kind() != Value::Kind::Function) {
      if (fn.is_undefined()) throw Failure{ErrorCode::InvalidArgument, undefined_message(fn) };
      throw Failure{ErrorCode::InvalidArgument, "'" + fn.type_name() + "' object is not callable"};
    }
    step();
    return fn.function()->call(*this, args);
  }

 private:
  void install_globals() {
    for (auto& [name, fn] : global_functions()) root_.set(name, Value(fn));
  }

  void emit(Text& out, const Text& t) {
    if (out.bytes.size() + t.bytes.size() > limits_.max_output_bytes)
      throw Failure{ErrorCode::ResourceExhausted,
                    "template output longer than " + std::to_string(limits_.max_output_bytes) + " bytes"};
    charge(t.bytes.size());
    out.append(t);
  }

  [[noreturn]] static void fail_at(const Failure& f, int line, int col) {
    Failure located = f;
    if (located.line == 0) {
      located.line = line;
      located.col = col;
    }
    throw located;
  }

  Flow exec(const Body& body, Frame& frame, Text& out) {
    for (const NodePtr& n : body) {
      Flow f = exec_node(*n, frame, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_node(const Node& n, Frame& frame, Text& out) {
    try {
      step();
      switch (n.kind) {
        case Node::Kind::Data: emit(out, Text(n.text)); return Flow::Normal;
        case Node::Kind::Output: emit(out, eval(*n.expr, frame).to_text()); return Flow::Normal;
        case Node::Kind::If:
          return exec(eval(*n.expr, frame).truthy() ? n.body : n.else_body, frame, out);
        case Node::Kind::For: return exec_for(n, frame, out);
        case Node::Kind::Set: {
          Value v = eval(*n.expr, frame);
          if (!n.attr.empty()) {
            const Value* ns = frame.find(n.targets[0]);
            if (!ns || !ns->is_dict() || !ns->dict().is_namespace)
              throw Failure{ErrorCode::InvalidArgument, "can only assign an attribute of a namespace()"};
            ns->mutable_dict().set(n.attr, std::move(v));
          } else if (n.targets.size() == 1) {
            frame.set(n.targets[0], std::move(v));
          } else {
            unpack(n.targets, v, frame);
          }
          return Flow::Normal;
        }
        case Node::Kind::SetBlock: {
          Text body;
          exec(n.body, frame, body);
          frame.set(n.targets[0], apply_filters(n.filters, Value(std::move(body)), frame));
          return Flow::Normal;
        }
        case Node::Kind::FilterBlock: {
          Text body;
          exec(n.body, frame, body);
          emit(out, apply_filters(n.filters, Value(std::move(body)), frame).to_text());
          return Flow::Normal;
        }
        case Node::Kind::Macro: frame.set(n.name, make_macro(n.name, n.params, n.body, &root_)); return Flow::Normal;
        case Node::Kind::CallBlock: {
          const Expr& call = *n.expr;
          Value callee = eval(*call.args[0], frame);
          Args args = eval_args(call, frame);
          args.kw.emplace_back("caller", make_macro("caller", n.params, n.body, &frame));
          emit(out, this->call(callee, args).to_text());
          return Flow::Normal;
        }
        case Node::Kind::Break: return Flow::Break;
        case Node::Kind::Continue: return Flow::Continue;
        case Node::Kind::Scope: return exec(n.body, frame, out);
      }
    } catch (const Failure& f) {
      fail_at(f, n.line, n.col);
    }
    return Flow::Normal;
  }

  void unpack(const std::vector<std::string>& targets, const Value& v, Frame& frame) {
    List items = iterate(v);
    if (items.size() != targets.size())
      throw Failure{ErrorCode::InvalidArgument, "cannot unpack " + std::to_string(items.size()) + " values into " +
                                                    std::to_string(targets.size()) + " names"};
    for (size_t i = 0; i < targets.size(); ++i) frame.set(targets[i], items[i]);
  }

  Flow exec_for(const Node& n, Frame& frame, Text& out) {
    Value seq = eval(*n.expr, frame);
    List items = iterate(seq);
    if (n.cond) {
      List kept;
      for (const Value& item : items) {
        Frame f{{}, &frame};
        bind(n.targets, item, f);
        if (eval(*n.cond, f).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(n.else_body, frame, out);
    const int64_t len = int64_t(items.size());
    for (int64_t i = 0; i < len; ++i) {
      step();
      Frame f{{}, &frame};
      Dict loop;
      loop.items = {
          {"index", Value(i + 1)},
          {"index0", Value(i)},
          {"revindex", Value(len - i)},
          {"revindex0", Value(len - i - 1)},
          {"first", Value(i == 0)},
          {"last", Value(i == len - 1)},
          {"length", Value(len)},
          {"depth", Value(1)},
          {"depth0", Value(0)},
          {"previtem", i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item")},
          {"nextitem", i + 1 < len ? items[size_t(i + 1)] : Value::undefined("there is no next item")},
          {"cycle", Value(cycle_function(i))},
      };
      f.set("loop", Value(std::move(loop)));
      bind(n.targets, items[size_t(i)], f);
      Flow fl = exec(n.body, f, out);
      if (fl == Flow::Break) break;
    }
    return Flow::Normal;
  }

  static std::shared_ptr<Function> cycle_function(int64_t index) {
    auto fn = std::make_shared<Function>();
    fn->name = "cycle";
    fn->call = [index](Runtime&, Args& a) -> Value {
      if (a.pos.empty()) throw Failure{ErrorCode::InvalidArgument, "no items for cycling given"};
      return a.pos[size_t(index % int64_t(a.pos.size()))];
    };
    return fn;
  }

  void bind(const std::vector<std::string>& targets, const Value& item, Frame& f) {
    if (targets.size() == 1) f.set(targets[0], item);
    else unpack(targets, item, f);
  }

  Value make_macro(const std::string& name, const std::vector<std::pair<std::string, ExprPtr>>& params, const Body& body,
                   const Frame* scope) {
    auto fn = std::make_shared<Function>();
    fn->name = name;
    // Nodes live as long as the template; the scope frame outlives every call made while it exists.
    const auto* p = &params;
    const auto* b = &body;
    fn->call = [this, name, p, b, scope](Runtime&, Args& a) -> Value {
      if (++depth_ > limits_.max_depth)
        throw Failure{ErrorCode::ResourceExhausted, "macro calls nested deeper than " + std::to_string(limits_.max_depth)};
      struct Leave {
        int& d;
        ~Leave() { --d; }
      } leave{depth_};
      Frame f{{}, scope};
      if (a.pos.size() > p->size())
        throw Failure{ErrorCode::InvalidArgument, "macro '" + name + "' takes not more than " +
                                                      std::to_string(p->size()) + " argument(s)"};
      for (size_t i = 0; i < p->size(); ++i) {
        const std::string& pname = (*p)[i].first;
        const ExprPtr& def = (*p)[i].second;
        if (i < a.pos.size()) {
          f.set(pname, a.pos[i]);
          continue;
        }
        auto kw = std::find_if(a.kw.begin(), a.kw.end(), [&](const auto& kv) { return kv.first == pname; });
        if (kw != a.kw.end()) f.set(pname, kw->second);
        else if (def) f.set(pname, eval(*def, f));
        else f.set(pname, Value::undefined("'" + pname + "' is undefined"));
      }
      for (const auto& kv : a.kw) {
        const std::string& k = kv.first;
        if (k == "caller") {
          f.set("caller", kv.second);
          continue;
        }
        bool known = std::any_of(p->begin(), p->end(), [&](const auto& pd) { return pd.first == k; });
        if (!known) throw Failure{ErrorCode::InvalidArgument, "macro '" + name + "' takes no keyword argument '" + k + "'"};
      }
      Text out;
      exec(*b, f, out);
      return Value(std::move(out));
    };
    return Value(fn);
  }

  Value apply_filters(const std::vector<ExprPtr>& filters, Value v, Frame& frame) {
    for (const ExprPtr& f : filters) {
      Args args = eval_args(*f, frame);
      args.pos.insert(args.pos.begin(), std::move(v));
      v = apply_filter(*this, f->name, args);
    }
    return v;
  }

  Args eval_args(const Expr& e, Frame& frame) {
    Args a;
    for (size_t i = 1; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i], frame));
    for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v, frame));
    return a;
  }

  Value eval(const Expr& e, Frame& frame) {
    try {
      return eval_inner(e, frame);
    } catch (const Failure& f) {
      fail_at(f, e.line, e.col);
    }
  }

  Value eval_inner(const Expr& e, Frame& frame) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.value;
      case Expr::Kind::Name: {
        const Value* v = frame.find(e.name);
        return v ? *v : Value::undefined("'" + e.name + "' is undefined");
      }
      case Expr::Kind::ListLit: {
        List l;
        l.reserve(e.args.size());
        for (const ExprPtr& a : e.args) l.push_back(eval(*a, frame));
        charge(l.size() * sizeof(Value));
        return e.tuple ? Value::tuple(std::move(l)) : Value(std::move(l));
      }
      case Expr::Kind::DictLit: {
        Dict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i], frame);
          if (!k.is_string()) throw Failure{ErrorCode::InvalidArgument, "dict keys must be strings here"};
          d.set(k.str(), eval(*e.args[i + 1], frame));
        }
        charge(d.items.size() * sizeof(Value));
        return Value(std::move(d));
      }
      case Expr::Kind::Attr: return get_attr(eval(*e.args[0], frame), e.name);
      case Expr::Kind::Item: return get_item(eval(*e.args[0], frame), eval(*e.args[1], frame));
      case Expr::Kind::Slice: {
        Value target = eval(*e.args[0], frame);
        std::optional<int64_t> parts[3];
        for (int i = 0; i < 3; ++i) {
          if (!e.args[size_t(i + 1)]) continue;
          Value p = eval(*e.args[size_t(i + 1)], frame);
          if (p.is_none()) continue;
          if (p.kind() != Value::Kind::Int && p.kind() != Value::Kind::Bool)
            throw Failure{ErrorCode::InvalidArgument, "slice indices must be integers"};
          parts[i] = p.as_int();
        }
        return slice(*this, target, parts[0], parts[1], parts[2]);
      }
      case Expr::Kind::Call: {
        const Expr& callee = *e.args[0];
        Args args = eval_args(e, frame);
        return call(eval(callee, frame), args);
      }
      case Expr::Kind::Filter: {
        Args args = eval_args(e, frame);
        args.pos.insert(args.pos.begin(), eval(*e.args[0], frame));
        step();
        return apply_filter(*this, e.name, args);
      }
      case Expr::Kind::Test: {
        Args args = eval_args(e, frame);
        args.pos.insert(args.pos.begin(), eval(*e.args[0], frame));
        bool r = apply_test(*this, e.name, args);
        return Value(e.negate ? !r : r);
      }
      case Expr::Kind::Neg:
      case Expr::Kind::Pos: {
        Value v = eval(*e.args[0], frame);
        if (v.kind() == Value::Kind::Float) return Value(e.kind == Expr::Kind::Neg ? -v.as_float() : v.as_float());
        if (v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool) {
          if (e.kind == Expr::Kind::Pos) return Value(v.as_int());
          if (v.as_int() == INT64_MIN) throw Failure{ErrorCode::InvalidArgument, "integer overflow"};
          return Value(-v.as_int());
        }
        throw Failure{ErrorCode::InvalidArgument, "bad operand type for unary -: '" + v.type_name() + "'"};
      }
      case Expr::Kind::Not: return Value(!eval(*e.args[0], frame).truthy());
      case Expr::Kind::And: {
        Value l = eval(*e.args[0], frame);
        return l.truthy() ? eval(*e.args[1], frame) : l;
      }
      case Expr::Kind::Or: {
        Value l = eval(*e.args[0], frame);
        return l.truthy() ? l : eval(*e.args[1], frame);
      }
      case Expr::Kind::Binary: return binary_op(*this, e.name, eval(*e.args[0], frame), eval(*e.args[1], frame));
      case Expr::Kind::Compare: {
        Value l = eval(*e.args[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.args[i + 1], frame);
          if (!compare_op(e.ops[i], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case Expr::Kind::Cond: {
        if (eval(*e.args[0], frame).truthy()) return eval(*e.args[1], frame);
        if (!e.args[2]) return Value::undefined("the inline if's condition was false and it has no else");
        return eval(*e.args[2], frame);
      }
    }
    return Value();
  }

  const JinjaLimits& limits_;
  std::time_t now_;
  uint64_t steps_ = 0;
  size_t work_ = 0;
  int depth_ = 0;
  Frame root_;
};

}  // namespace
}  // namespace jinja

Result<Text> JinjaTemplate::render(const Dict& globals, std::time_t now) const {
  try {
    Renderer r(p_->limits, now);
    return r.run(p_->body, globals);
  } catch (const Failure& f) {
    std::string where = f.line ? "line " + std::to_string(f.line) + ", column " + std::to_string(f.col) + ": " : "";
    return Error(f.code, "template: " + where + f.message);
  }
}

}  // namespace omni::model
