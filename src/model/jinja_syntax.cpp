#include "model/jinja_syntax.h"

#include <cctype>
#include <cstdlib>

namespace omni::model::jinja {
namespace {

struct SyntaxError {
  int line, col;
  std::string message;
};

struct Token {
  enum class Type { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type = Type::Eof;
  std::string text;  // data, name, operator, string value
  int line = 0, col = 0;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string rstrip(std::string s) {
  while (!s.empty() && is_space(s.back())) s.pop_back();
  return s;
}

// jinja2 reads the source with its newlines as "\n" and without one trailing newline
// (keep_trailing_newline is off in transformers).
std::string normalize(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, tag == std::string::npos ? std::string::npos : tag - pos_);
      if (tag == std::string::npos) {
        emit_data(text, pos_);
        break;
      }
      char kind = src_[tag + 1];
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : 0;
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+' && kind != '{') {
        size_t l = text.rfind('\n');
        size_t l_pos = l == std::string::npos ? 0 : l + 1;
        if (l_pos > 0 || line_starting) {
          bool blank = true;
          for (size_t i = l_pos; i < text.size(); ++i) blank = blank && is_space(text[i]);
          if (blank) text.resize(l_pos);
        }
      }
      emit_data(text, pos_);
      advance_to(tag);
      size_t open_len = (sign == '-' || sign == '+') ? 3 : 2;
      if (kind == '#') {
        size_t end = src_.find("#}", tag + open_len);
        if (end == std::string::npos) fail(tag, "unterminated comment");
        bool strip_after = end > 0 && src_[end - 1] == '-';
        advance_to(end + 2);
        finish_tag(strip_after, /*trim_newline=*/true);
      } else if (kind == '%' && is_raw(tag + open_len)) {
        lex_raw(tag);
      } else {
        lex_tag(kind, tag, open_len);
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    push(Token::Type::Eof, "", pos_);
    return std::move(toks_);
  }

 private:
  [[noreturn]] void fail(size_t at, std::string msg) {
    auto [l, c] = where(at);
    throw SyntaxError{l, c, std::move(msg)};
  }

  std::pair<int, int> where(size_t at) {
    // Lines and columns are counted incrementally: tokens are pushed in source order.
    while (wpos_ < at && wpos_ < src_.size()) {
      if (src_[wpos_] == '\n') {
        ++wline_;
        wcol_ = 1;
      } else {
        ++wcol_;
      }
      ++wpos_;
    }
    return {wline_, wcol_};
  }

  size_t find_tag(size_t from) {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_data(const std::string& text, size_t at) {
    if (!text.empty()) push(Token::Type::Data, text, at);
  }

  void push(Token::Type t, std::string text, size_t at) {
    auto [l, c] = where(at);
    toks_.push_back(Token{t, std::move(text), l, c});
  }

  void advance_to(size_t p) { pos_ = p; }

  // After a tag: `-` strips all whitespace that follows; a block or comment end eats one newline.
  void finish_tag(bool strip_after, bool trim_newline) {
    if (strip_after) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  bool is_raw(size_t p) {
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  void lex_raw(size_t tag) {
    size_t end = src_.find("%}", tag);
    bool strip_after = src_[end - 1] == '-';
    pos_ = end + 2;
    finish_tag(strip_after, true);
    size_t body = pos_;
    for (size_t i = src_.find("{%", body); i != std::string::npos; i = src_.find("{%", i + 2)) {
      size_t p = i + 2;
      bool strip_before = p < src_.size() && src_[p] == '-';
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      while (p < src_.size() && is_space(src_[p])) ++p;
      bool strip = src_.compare(p, 3, "-%}") == 0;
      if (!strip && src_.compare(p, 2, "%}") != 0) continue;
      std::string text = src_.substr(body, i - body);
      if (strip_before) text = rstrip(text);
      emit_data(text, body);
      pos_ = p + (strip ? 3 : 2);
      finish_tag(strip, true);
      return;
    }
    fail(tag, "missing endraw");
  }

  void lex_tag(char kind, size_t tag, size_t open_len) {
    push(kind == '{' ? Token::Type::VarBegin : Token::Type::BlockBegin, "", tag);
    size_t p = tag + open_len;
    int balance = 0;
    const char close = kind == '{' ? '}' : '%';
    for (;;) {
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (p >= src_.size()) fail(tag, kind == '{' ? "unexpected end of template in {{ }}" : "unexpected end of template in {% %}");
      if (balance == 0) {
        bool minus = src_[p] == '-' && p + 2 < src_.size() && src_[p + 1] == close && src_[p + 2] == '}';
        bool plus = src_[p] == '+' && p + 2 < src_.size() && src_[p + 1] == close && src_[p + 2] == '}';
        if (minus || plus || (src_[p] == close && p + 1 < src_.size() && src_[p + 1] == '}')) {
          push(kind == '{' ? Token::Type::VarEnd : Token::Type::BlockEnd, "", p);
          pos_ = p + (minus || plus ? 3 : 2);
          finish_tag(minus, kind == '%' && !plus);
          return;
        }
      }
      char c = src_[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t s = p;
        while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
        push(Token::Type::Name, src_.substr(s, p - s), s);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t s = p;
        bool is_float = false;
        while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
        if (p + 1 < src_.size() && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
          is_float = true;
          ++p;
          while (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) ++p;
        }
        if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
          size_t q = p + 1;
          if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
          if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
            is_float = true;
            p = q;
            while (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) ++p;
          }
        }
        std::string num;
        for (size_t i = s; i < p; ++i)
          if (src_[i] != '_') num += src_[i];
        push(is_float ? Token::Type::Float : Token::Type::Int, num, s);
      } else if (c == '\'' || c == '"') {
        size_t s = p;
        push(Token::Type::String, lex_string(p), s);
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                     ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|", ";"};
        std::string op;
        for (const char* o : kOps) {
          if (src_.compare(p, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        }
        if (op.empty()) fail(p, std::string("unexpected character '") + c + "'");
        if (op == "(" || op == "[" || op == "{") ++balance;
        if (op == ")" || op == "]" || op == "}") --balance;
        push(Token::Type::Op, op, p);
        p += op.size();
      }
    }
  }

  // A string literal with Python's escapes (as jinja2 decodes them).
  std::string lex_string(size_t& p) {
    char q = src_[p];
    size_t start = p;
    std::string out;
    ++p;
    for (;;) {
      if (p >= src_.size()) fail(start, "unterminated string");
      char c = src_[p++];
      if (c == q) return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= src_.size()) fail(start, "unterminated string");
      char e = src_[p++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '0': out += '\0'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n > src_.size()) fail(start, "truncated escape in string");
          std::string hex = src_.substr(p, n);
          for (char h : hex)
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail(start, "bad escape in string");
          p += n;
          unsigned long cp = std::strtoul(hex.c_str(), nullptr, 16);
          if (cp > 0x10FFFF) fail(start, "bad escape in string");
          append_utf8(out, static_cast<uint32_t>(cp));
          break;
        }
        default:
          out += '\\';
          out += e;
      }
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string src_;
  size_t pos_ = 0;
  std::vector<Token> toks_;
  size_t wpos_ = 0;
  int wline_ = 1, wcol_ = 1;
};

class Parser {
 public:
  Parser(std::vector<Token> toks, int max_depth) : t_(std::move(toks)), max_depth_(max_depth) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  using Names = std::vector<std::string_view>;

  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  Token take() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }

  [[noreturn]] void fail(const Token& at, std::string msg) { throw SyntaxError{at.line, at.col, std::move(msg)}; }

  bool is_op(std::string_view op) const { return cur().type == Token::Type::Op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == Token::Type::Name && cur().text == n; }
  void expect_op(std::string_view op) {
    if (!is_op(op)) fail(cur(), "expected '" + std::string(op) + "', got " + describe(cur()));
    take();
  }
  std::string expect_name() {
    if (cur().type != Token::Type::Name) fail(cur(), "expected a name, got " + describe(cur()));
    return take().text;
  }
  void expect(Token::Type type, std::string_view what) {
    if (cur().type != type) fail(cur(), "expected " + std::string(what) + ", got " + describe(cur()));
    take();
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::Eof: return "end of template";
      case Token::Type::BlockEnd: return "'%}'";
      case Token::Type::VarEnd: return "'}}'";
      case Token::Type::Data: return "text";
      default: return "'" + t.text + "'";
    }
  }

  struct DepthGuard {
    Parser& p;
    DepthGuard(Parser& parser, const Token& at) : p(parser) {
      if (++p.depth_ > p.max_depth_) p.fail(at, "nesting deeper than " + std::to_string(p.max_depth_));
    }
    ~DepthGuard() { --p.depth_; }
  };

  template <class T>
  static std::shared_ptr<T> at(const Token& tok) {
    auto n = std::make_shared<T>();
    n->line = tok.line;
    n->col = tok.col;
    return n;
  }

  // Statements up to one of `ends` ({% end %} names): the name found is left in `end`, its tag
  // consumed up to the name.
  Body parse_body(const Names& ends, std::string& end) {
    DepthGuard g(*this, cur());
    Body body;
    for (;;) {
      const Token& tok = cur();
      switch (tok.type) {
        case Token::Type::Eof:
          if (!ends.empty()) fail(tok, "unexpected end of template, expected '" + std::string(ends.back()) + "'");
          return body;
        case Token::Type::Data: {
          auto n = at<Node>(tok);
          n->kind = Node::Kind::Data;
          n->text = tok.text;
          take();
          body.push_back(n);
          break;
        }
        case Token::Type::VarBegin: {
          auto n = at<Node>(tok);
          take();
          n->kind = Node::Kind::Output;
          n->expr = parse_tuple();
          expect(Token::Type::VarEnd, "'}}'");
          body.push_back(n);
          break;
        }
        case Token::Type::BlockBegin: {
          take();
          if (cur().type != Token::Type::Name) fail(cur(), "expected a tag name");
          for (std::string_view e : ends) {
            if (cur().text == e) {
              end = take().text;
              return body;
            }
          }
          body.push_back(parse_statement());
          break;
        }
        default: fail(tok, "unexpected " + describe(tok));
      }
    }
  }

  void end_tag() { expect(Token::Type::BlockEnd, "'%}'"); }

  NodePtr parse_statement() {
    const Token& tok = cur();
    std::string kw = take().text;
    auto n = at<Node>(tok);
    std::string end;
    if (kw == "if") {
      n->kind = Node::Kind::If;
      n->expr = parse_tuple();
      end_tag();
      n->body = parse_body({"elif", "else", "endif"}, end);
      Node* tail = n.get();
      while (end == "elif") {
        auto e = at<Node>(cur());
        e->kind = Node::Kind::If;
        e->expr = parse_tuple();
        end_tag();
        e->body = parse_body({"elif", "else", "endif"}, end);
        Node* next = e.get();
        tail->else_body.push_back(e);
        tail = next;
      }
      if (end == "else") {
        end_tag();
        tail->else_body = parse_body({"endif"}, end);
      }
      end_tag();
    } else if (kw == "for") {
      n->kind = Node::Kind::For;
      parse_targets(n->targets);
      if (!is_name("in")) fail(cur(), "expected 'in'");
      take();
      n->expr = parse_tuple(/*with_cond=*/false);
      if (is_name("if")) {
        take();
        n->cond = parse_expression();
      }
      if (is_name("recursive")) fail(cur(), "recursive loops are not supported");
      end_tag();
      n->body = parse_body({"else", "endfor"}, end);
      if (end == "else") {
        end_tag();
        n->else_body = parse_body({"endfor"}, end);
      }
      end_tag();
    } else if (kw == "set") {
      std::string first = expect_name();
      if (is_op(".")) {
        take();
        n->attr = expect_name();
        n->targets.push_back(first);
      } else {
        n->targets.push_back(first);
        while (is_op(",")) {
          take();
          n->targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        take();
        n->kind = Node::Kind::Set;
        n->expr = parse_tuple();
        end_tag();
      } else {
        if (n->targets.size() != 1 || !n->attr.empty()) fail(tok, "a block set assigns one name");
        n->kind = Node::Kind::SetBlock;
        while (is_op("|")) {
          take();
          n->filters.push_back(parse_filter(nullptr));
        }
        end_tag();
        n->body = parse_body({"endset"}, end);
        end_tag();
      }
    } else if (kw == "macro") {
      n->kind = Node::Kind::Macro;
      n->name = expect_name();
      parse_params(n->params);
      end_tag();
      n->body = parse_body({"endmacro"}, end);
      if (cur().type == Token::Type::Name) take();  // {% endmacro name %}
      end_tag();
    } else if (kw == "call") {
      n->kind = Node::Kind::CallBlock;
      if (is_op("(")) parse_params(n->params);
      n->expr = parse_expression();
      if (n->expr->kind != Expr::Kind::Call) fail(tok, "expected a call in {% call %}");
      end_tag();
      n->body = parse_body({"endcall"}, end);
      end_tag();
    } else if (kw == "filter") {
      n->kind = Node::Kind::FilterBlock;
      n->filters.push_back(parse_filter(nullptr));
      while (is_op("|")) {
        take();
        n->filters.push_back(parse_filter(nullptr));
      }
      end_tag();
      n->body = parse_body({"endfilter"}, end);
      end_tag();
    } else if (kw == "break" || kw == "continue") {
      n->kind = kw == "break" ? Node::Kind::Break : Node::Kind::Continue;
      end_tag();
    } else if (kw == "generation") {
      n->kind = Node::Kind::Scope;
      end_tag();
      n->body = parse_body({"endgeneration"}, end);
      end_tag();
    } else {
      fail(tok, "unknown tag '" + kw + "'");
    }
    return n;
  }

  void parse_targets(std::vector<std::string>& out) {
    bool paren = is_op("(");
    if (paren) take();
    out.push_back(expect_name());
    while (is_op(",")) {
      take();
      out.push_back(expect_name());
    }
    if (paren) expect_op(")");
  }

  void parse_params(std::vector<std::pair<std::string, ExprPtr>>& params) {
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      std::string name = expect_name();
      ExprPtr def;
      if (is_op("=")) {
        take();
        def = parse_expression();
      }
      params.emplace_back(std::move(name), def);
    }
    take();
  }

  // expr, expr, ... (a tuple when there is a comma).
  ExprPtr parse_tuple(bool with_cond = true) {
    const Token& tok = cur();
    ExprPtr first = with_cond ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = at<Expr>(tok);
    t->kind = Expr::Kind::ListLit;
    t->tuple = true;
    t->args.push_back(first);
    while (is_op(",")) {
      take();
      if (cur().type == Token::Type::VarEnd || cur().type == Token::Type::BlockEnd || is_op(")")) break;
      t->args.push_back(with_cond ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    DepthGuard g(*this, cur());
    const Token& tok = cur();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      take();
      auto c = at<Expr>(tok);
      c->kind = Expr::Kind::Cond;
      c->args.push_back(parse_or());
      c->args.push_back(e);
      if (is_name("else")) {
        take();
        c->args.push_back(parse_expression());
      } else {
        c->args.push_back(nullptr);
      }
      e = c;
    }
    return e;
  }

  ExprPtr binary(Expr::Kind kind, const Token& tok, ExprPtr l, ExprPtr r, std::string op = "") {
    auto e = at<Expr>(tok);
    e->kind = kind;
    e->name = std::move(op);
    e->args = {std::move(l), std::move(r)};
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      const Token tok = take();
      l = binary(Expr::Kind::Or, tok, l, parse_and());
    }
    return l;
  }
  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      const Token tok = take();
      l = binary(Expr::Kind::And, tok, l, parse_not());
    }
    return l;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this, cur());
      const Token tok = take();
      auto e = at<Expr>(tok);
      e->kind = Expr::Kind::Not;
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const Token& tok = cur();
    ExprPtr l = parse_math1();
    std::shared_ptr<Expr> cmp;
    for (;;) {
      std::string op;
      if (cur().type == Token::Type::Op &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" || cur().text == "<=" ||
           cur().text == ">=")) {
        op = take().text;
      } else if (is_name("in")) {
        take();
        op = "in";
      } else if (is_name("not") && peek().type == Token::Type::Name && peek().text == "in") {
        take();
        take();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = at<Expr>(tok);
        cmp->kind = Expr::Kind::Compare;
        cmp->args.push_back(l);
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? ExprPtr(cmp) : l;
  }
  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token tok = take();
      l = binary(Expr::Kind::Binary, tok, l, parse_concat(), tok.text);
    }
    return l;
  }
  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      const Token tok = take();
      l = binary(Expr::Kind::Binary, tok, l, parse_math2(), "~");
    }
    return l;
  }
  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token tok = take();
      l = binary(Expr::Kind::Binary, tok, l, parse_pow(), tok.text);
    }
    return l;
  }
  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      const Token tok = take();
      l = binary(Expr::Kind::Binary, tok, l, parse_unary(true), "**");
    }
    return l;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this, cur());
    const Token& tok = cur();
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token t = take();
      auto u = at<Expr>(t);
      u->kind = t.text == "-" ? Expr::Kind::Neg : Expr::Kind::Pos;
      u->args.push_back(parse_unary(false));
      e = u;
    } else {
      e = parse_primary();
    }
    e = parse_postfix(e);
    if (with_filter) e = parse_filter_expr(e);
    (void)tok;
    return e;
  }

  ExprPtr parse_primary() {
    DepthGuard g(*this, cur());
    const Token tok = cur();
    auto e = at<Expr>(tok);
    switch (tok.type) {
      case Token::Type::Name: {
        take();
        const std::string& n = tok.text;
        if (n == "true" || n == "True") e->value = Value(true);
        else if (n == "false" || n == "False") e->value = Value(false);
        else if (n == "none" || n == "None") e->value = Value::none();
        else {
          e->kind = Expr::Kind::Name;
          e->name = n;
        }
        return e;
      }
      case Token::Type::String: {
        std::string s = take().text;
        while (cur().type == Token::Type::String) s += take().text;
        e->value = Value(s);
        return e;
      }
      case Token::Type::Int: {
        take();
        char* endp = nullptr;
        errno = 0;
        long long v = std::strtoll(tok.text.c_str(), &endp, 10);
        if (errno == ERANGE) fail(tok, "integer literal too large");
        e->value = Value(int64_t(v));
        return e;
      }
      case Token::Type::Float:
        take();
        e->value = Value(std::strtod(tok.text.c_str(), nullptr));
        return e;
      case Token::Type::Op:
        if (tok.text == "(") {
          take();
          if (is_op(")")) {
            take();
            e->kind = Expr::Kind::ListLit;
            e->tuple = true;
            return e;
          }
          ExprPtr inner = parse_tuple();
          expect_op(")");
          return inner;
        }
        if (tok.text == "[") {
          take();
          e->kind = Expr::Kind::ListLit;
          while (!is_op("]")) {
            if (!e->args.empty()) {
              expect_op(",");
              if (is_op("]")) break;
            }
            e->args.push_back(parse_expression());
          }
          take();
          return e;
        }
        if (tok.text == "{") {
          take();
          e->kind = Expr::Kind::DictLit;
          while (!is_op("}")) {
            if (!e->args.empty()) {
              expect_op(",");
              if (is_op("}")) break;
            }
            e->args.push_back(parse_expression());
            expect_op(":");
            e->args.push_back(parse_expression());
          }
          take();
          return e;
        }
        [[fallthrough]];
      default: fail(tok, "unexpected " + describe(tok));
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      const Token tok = cur();
      if (is_op(".")) {
        take();
        auto a = at<Expr>(tok);
        if (cur().type == Token::Type::Name) {
          a->kind = Expr::Kind::Attr;
          a->name = take().text;
          a->args.push_back(e);
        } else if (cur().type == Token::Type::Int) {
          a->kind = Expr::Kind::Item;
          auto idx = at<Expr>(cur());
          idx->value = Value(int64_t(std::strtoll(take().text.c_str(), nullptr, 10)));
          a->args = {e, idx};
        } else {
          fail(cur(), "expected an attribute name");
        }
        e = a;
      } else if (is_op("[")) {
        take();
        e = parse_subscript(e, tok);
      } else if (is_op("(")) {
        e = parse_call(e);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, const Token& tok) {
    auto s = at<Expr>(tok);
    ExprPtr parts[3];
    int n = 0;
    bool slice = false;
    for (;;) {
      if (is_op("]")) break;
      if (is_op(":")) {
        take();
        slice = true;
        if (++n > 2) fail(cur(), "too many ':' in a slice");
        continue;
      }
      if (parts[n]) fail(cur(), "expected ':' or ']'");
      parts[n] = parse_expression();
    }
    take();
    if (slice) {
      s->kind = Expr::Kind::Slice;
      s->args = {target, parts[0], parts[1], parts[2]};
    } else {
      if (!parts[0]) fail(tok, "empty subscript");
      s->kind = Expr::Kind::Item;
      s->args = {target, parts[0]};
    }
    return s;
  }

  void parse_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (cur().type == Token::Type::Name && peek().type == Token::Type::Op && peek().text == "=") {
        std::string k = take().text;
        take();
        e.kwargs.emplace_back(std::move(k), parse_expression());
      } else {
        if (!e.kwargs.empty()) fail(cur(), "positional argument after keyword argument");
        e.args.push_back(parse_expression());
      }
    }
    take();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = at<Expr>(cur());
    c->kind = Expr::Kind::Call;
    c->args.push_back(callee);
    parse_args(*c);
    return c;
  }

  // `name[(args)]` after a `|`; `target` null for filter blocks.
  ExprPtr parse_filter(ExprPtr target) {
    auto f = at<Expr>(cur());
    f->kind = Expr::Kind::Filter;
    f->name = expect_name();
    while (is_op(".")) {
      take();
      f->name += "." + expect_name();
    }
    f->args.push_back(target);
    if (is_op("(")) parse_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    for (;;) {
      if (is_op("|")) {
        take();
        e = parse_filter(e);
      } else if (is_name("is")) {
        const Token tok = take();
        auto t = at<Expr>(tok);
        t->kind = Expr::Kind::Test;
        if (is_name("not")) {
          take();
          t->negate = true;
        }
        t->name = expect_name();
        t->args.push_back(e);
        if (is_op("(")) {
          parse_args(*t);
        } else if ((cur().type == Token::Type::Name || cur().type == Token::Type::String ||
                    cur().type == Token::Type::Int || cur().type == Token::Type::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if")) {
          if (is_name("is")) fail(cur(), "unexpected 'is'");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = t;
      } else if (is_op("(")) {
        e = parse_call(e);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int max_depth_;
};

}  // namespace

Result<Body> parse_template(std::string_view source, int max_depth) {
  try {
    Lexer lexer(normalize(source));
    Parser parser(lexer.run(), max_depth);
    return parser.parse_all();
  } catch (const SyntaxError& e) {
    return Error(ErrorCode::InvalidArgument,
                 "template syntax: line " + std::to_string(e.line) + ", column " + std::to_string(e.col) + ": " +
                     e.message);
  }
}

}  // namespace omni::model::jinja
