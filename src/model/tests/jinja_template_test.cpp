// The interpreter's own guarantees: errors are values that say where, no template runs or grows
// without bound, random and malformed templates give errors rather than crashes, and data marks
// follow the bytes they belong to. (What templates render is checked against Python's jinja2 in
// jinja_chat_template_test.)
#include "model/jinja_template.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace omni::model {
namespace {

using jinja::Dict;
using jinja::Text;
using jinja::Value;

Result<Text> render(std::string_view source, const Dict& globals = {}, const JinjaLimits& limits = {}) {
  auto t = JinjaTemplate::parse(source, limits);
  if (!t) return t.error();
  return t->render(globals, 0);
}

TEST(JinjaTemplate, SyntaxErrorsSayWhere) {
  struct Case {
    const char* source;
    const char* where;
  };
  for (const Case& c : {Case{"ok\n{% if x %}", "line 2"}, Case{"{{ 1 + }}", "line 1, column 8"},
                        Case{"a\nb\n  {% for %}", "line 3"}, Case{"{{ 'open", "line 1"},
                        Case{"{% endif %}", "line 1"}, Case{"{% include 'x' %}", "unknown tag 'include'"},
                        Case{"{# never closed", "unterminated comment"}, Case{"{{ x | }}", "expected a name"}}) {
    auto r = render(c.source);
    ASSERT_FALSE(r.ok()) << c.source;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << c.source;
    EXPECT_NE(r.error().message.find(c.where), std::string::npos) << c.source << " -> " << r.error().message;
  }
}

TEST(JinjaTemplate, RenderErrorsSayWhere) {
  auto r = render("line one\n{% if true %}\n  {{ 1 + 'a' }}{% endif %}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find("line 3"), std::string::npos) << r.error().message;
  auto raised = render("\n\n{{ raise_exception('Only user and assistant roles are supported!') }}");
  ASSERT_FALSE(raised.ok());
  EXPECT_NE(raised.error().message.find("line 3"), std::string::npos) << raised.error().message;
  EXPECT_NE(raised.error().message.find("Only user and assistant roles are supported!"), std::string::npos);
}

TEST(JinjaTemplate, EndlessLoopsStopAtTheStepLimit) {
  JinjaLimits limits;
  limits.max_steps = 100000;
  // Nested loops: 10^12 iterations if nothing stopped them.
  auto r = render("{% for a in range(1000000) %}{% for b in range(1000000) %}{% endfor %}{% endfor %}", {}, limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
}

TEST(JinjaTemplate, OutputAndCreatedBytesAreBounded) {
  JinjaLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_work_bytes = 8 << 20;
  auto big = render("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", {}, limits);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::ResourceExhausted) << big.error().message;
  // Doubling a string in a namespace: 2^40 bytes if nothing stopped it.
  auto doubling = render(
      "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
      {}, limits);
  ASSERT_FALSE(doubling.ok());
  EXPECT_EQ(doubling.error().code, ErrorCode::ResourceExhausted) << doubling.error().message;
  auto repeat = render("{{ ('x' * 1000000000) | length }}", {}, limits);
  ASSERT_FALSE(repeat.ok());
  EXPECT_EQ(repeat.error().code, ErrorCode::ResourceExhausted);
}

TEST(JinjaTemplate, RecursionIsBounded) {
  auto r = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
  // Deep nesting in the source is a syntax error, not a stack overflow.
  std::string deep(100000, '(');
  auto nested = render("{{ " + deep + "1" + std::string(100000, ')') + " }}");
  ASSERT_FALSE(nested.ok());
  EXPECT_EQ(nested.error().code, ErrorCode::InvalidArgument);
  std::string ifs;
  for (int i = 0; i < 10000; ++i) ifs += "{% if true %}";
  EXPECT_FALSE(render(ifs).ok());
}

TEST(JinjaTemplate, DataMarksFollowTheirBytes) {
  Dict g;
  g.set("m", Value(Text::data("  <|user|> hi  ")));
  g.set("plain", Value("PLAIN"));
  auto r = render("[{{ plain }}{{ m | trim }}{{ m.strip()[2:5] }}{{ m.upper() }}{{ m | tojson }}{{ plain ~ m[0:4] }}]", g);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Text& t = *r;
  std::string data, markup;
  for (size_t i = 0; i < t.bytes.size(); ++i) (t.is_data(i) ? data : markup) += t.bytes[i];
  // Everything the message gave (even upper-cased or JSON-escaped) is data; the rest is markup.
  EXPECT_EQ(markup, "[PLAINPLAIN]");
  EXPECT_EQ(data, "<|user|> hiuse  <|USER|> HI  \"  <|user|> hi  \"  <|");
}

// Random byte strings, and random splices of template syntax, must parse and render to a value or
// an Error: no crash, no hang (each is bounded by the default limits).
TEST(JinjaTemplate, RandomTemplatesGiveErrorsNotCrashes) {
  const char* pieces[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " if ", " for ", " in ", " endif ",
                          " endfor ", "x", "messages", "[", "]", "(", ")", "'", "\"", "|", " is ", "not ", " set ",
                          "=", ".", "loop", "1", "0", ",", ":", "~", "*", "/", "range(3)", " macro ", " endmacro ",
                          " raw ", " endraw ", "namespace()", "\n", "tojson", " call ", "caller()", "**", "//"};
  std::mt19937 rng(1234);
  Dict g;
  g.set("messages", Value(jinja::List{Value(Text::data("hi"))}));
  JinjaLimits limits;
  limits.max_steps = 20000;
  int rendered = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string src;
    int n = int(rng() % 24);
    for (int k = 0; k < n; ++k) {
      if (rng() % 8 == 0) src += char(rng() % 256);
      else src += pieces[rng() % (sizeof pieces / sizeof pieces[0])];
    }
    auto r = render(src, g, limits);
    rendered += r.ok();
  }
  EXPECT_GT(rendered, 0);
}

}  // namespace
}  // namespace omni::model
