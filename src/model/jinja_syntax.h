// The syntax tree of a Jinja template and the parser that builds it (jinja2's grammar, with the
// whitespace rules transformers configures: trim_blocks and lstrip_blocks on). Internal to
// JinjaTemplate; nodes are immutable once parsed, so a parsed template renders concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "model/jinja_value.h"

namespace omni::model::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    ListLit,  // args
    DictLit,  // args: key, value, key, value...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (null where omitted)
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs); args[0] null in a filter block
    Test,     // args[0] is [not: negate] name(args[1..])
    Neg,
    Pos,
    Not,
    And,
    Or,
    Binary,   // args[0] name args[1]: + - * / // % ** ~
    Compare,  // args[0] ops[0] args[1] ops[1] args[2]...: == != < > <= >= in notin
    Cond,     // args[1] if args[0] else args[2] (args[2] null: undefined)
  };
  Kind kind = Kind::Literal;
  int line = 0, col = 0;
  Value value;
  std::string name;
  bool negate = false;  // Test: `is not`
  bool tuple = false;   // ListLit: written as a tuple
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Node;
using NodePtr = std::shared_ptr<const Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    Data,      // text
    Output,    // {{ expr }}
    If,        // expr, body, else_body (an elif is an If alone in else_body)
    For,       // targets in expr [if cond]: body, else_body
    Set,       // targets (or target.attr) = expr
    SetBlock,  // targets[0] = rendered body, through filters
    Macro,     // name(params): body
    CallBlock, // {% call [(params)] expr %} body: expr's macro gets caller()
    FilterBlock,  // body through filters
    Break,
    Continue,
    Scope,     // body as is ({% generation %}, transformers' marker for assistant text)
  };
  Kind kind = Kind::Data;
  int line = 0, col = 0;
  std::string text;
  ExprPtr expr, cond;
  std::vector<std::string> targets;
  std::string attr;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro/caller parameters and defaults
  std::vector<ExprPtr> filters;                         // Filter exprs with args[0] null
  Body body, else_body;
};

// Parses `source`; an Error (InvalidArgument) says what is wrong and where ("line 3, column 7: ...").
// `max_depth` bounds nesting (blocks and parentheses), so no input exhausts the parser's stack.
Result<Body> parse_template(std::string_view source, int max_depth);

}  // namespace omni::model::jinja
