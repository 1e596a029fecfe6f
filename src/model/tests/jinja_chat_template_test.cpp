// Real chat templates against Python's jinja2: tests/data/templates holds the templates (their
// sources in templates.json and README.md), the conversations, single-feature cases, and what
// scripts/chat_templates_expected.py rendered for each with jinja2 configured as transformers does.
// Every render here must equal that byte for byte, or fail where jinja2 failed.
#include "model/jinja_chat_template.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace omni::model {
namespace {

using nlohmann::ordered_json;

constexpr std::time_t kFixedNow = 1767225600;  // the script's FIXED_NOW

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ordered_json read_json(const std::string& name) {
  return ordered_json::parse(read(std::string(OMNI_TEMPLATES_DIR) + "/" + name));
}

class JinjaReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // strftime_now formats local time; the expected files were made in UTC.
    setenv("TZ", "UTC", 1);
    tzset();
  }
};

// Checks one render against jinja2's: the same text, or an error where jinja2 raised one (with
// raise_exception's message verbatim).
void expect_same(const Result<ChatPrompt>& got, const ordered_json& want, const std::string& what) {
  if (want.contains("output")) {
    ASSERT_TRUE(got.ok()) << what << ": " << got.error().message;
    EXPECT_EQ(got->text(), want["output"].get<std::string>()) << what;
  } else {
    ASSERT_FALSE(got.ok()) << what << ": jinja2 failed (" << want["error"] << ") but we rendered:\n" << got->text();
    EXPECT_EQ(got.error().code, ErrorCode::InvalidArgument) << what;
    if (want["raised"].get<bool>()) {
      EXPECT_NE(got.error().message.find(want["error"].get<std::string>()), std::string::npos)
          << what << ": " << got.error().message;
    }
  }
}

TEST_F(JinjaReference, RealTemplatesRenderAsJinja2Does) {
  const ordered_json manifest = read_json("templates.json");
  const ordered_json conversations = read_json("conversations.json");
  ASSERT_GE(manifest.size(), 15u);
  size_t compared = 0;
  for (const auto& entry : manifest) {
    const std::string file = entry["file"];
    auto tmpl = JinjaChatTemplate::parse(read(std::string(OMNI_TEMPLATES_DIR) + "/" + file),
                                         entry.value("bos_token", ""), entry.value("eos_token", ""));
    ASSERT_TRUE(tmpl.ok()) << file << ": " << tmpl.error().message;
    const ordered_json expected = read_json("expected/" + file.substr(0, file.size() - 6) + ".json");
    for (const auto& conv : conversations) {
      ChatInput input;
      input.messages = conv["messages"];
      if (conv.contains("tools")) input.tools = conv["tools"];
      if (conv.contains("extra")) input.extra = conv["extra"];
      input.add_generation_prompt = conv["add_generation_prompt"];
      const std::string name = conv["name"];
      expect_same(tmpl->render(input, kFixedNow), expected[name], file + " / " + name);
      ++compared;
    }
  }
  EXPECT_EQ(compared, manifest.size() * conversations.size());
}

TEST_F(JinjaReference, FeaturesRenderAsJinja2Does) {
  const ordered_json cases = read_json("features.json");
  const ordered_json expected = read_json("expected/features.json");
  ASSERT_EQ(cases.size(), expected.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string source = cases[i]["t"];
    auto t = JinjaTemplate::parse(source);
    if (!t.ok()) {
      ADD_FAILURE() << "case " << i << " does not parse: " << t.error().message;
      continue;
    }
    jinja::Dict globals;
    if (cases[i].contains("v"))
      for (const auto& [k, v] : cases[i]["v"].items()) globals.set(k, jinja_data(v));
    auto out = t->render(globals, kFixedNow);
    Result<ChatPrompt> as_prompt = out.ok() ? Result<ChatPrompt>(ChatPrompt{{ChatSegment{out->bytes, false}}})
                                            : Result<ChatPrompt>(out.error());
    expect_same(as_prompt, expected[i], "case " + std::to_string(i) + ": " + source);
  }
}

// The text of every message, tool and argument stays data however a template moves it: for each
// real template, the hostile message of `markup_in_content` (control-token texts and Jinja syntax)
// appears in the prompt only inside from_message segments, and the template's own markup around it
// (the texts of the model's BOS/EOS, which the conversation does not contain elsewhere) does not.
TEST_F(JinjaReference, MessageTextStaysDataThroughRealTemplates) {
  const ordered_json manifest = read_json("templates.json");
  const ordered_json conversations = read_json("conversations.json");
  for (const auto& entry : manifest) {
    const std::string file = entry["file"];
    auto tmpl = JinjaChatTemplate::parse(read(std::string(OMNI_TEMPLATES_DIR) + "/" + file),
                                         entry.value("bos_token", ""), entry.value("eos_token", ""));
    ASSERT_TRUE(tmpl.ok());
    for (const auto& conv : conversations) {
      ChatInput input;
      input.messages = conv["messages"];
      if (conv.contains("tools")) input.tools = conv["tools"];
      input.add_generation_prompt = conv["add_generation_prompt"];
      auto p = tmpl->render(input, kFixedNow);
      if (!p.ok()) continue;
      // Each byte's origin.
      std::string text, marks;
      for (const ChatSegment& s : p->segments) {
        text += s.text;
        marks.append(s.text.size(), s.from_message ? 1 : 0);
      }
      // Every string of the conversation that reaches the prompt whole is data there.
      std::vector<std::string> strings;
      for (const auto& m : conv["messages"])
        if (m.contains("content") && m["content"].is_string()) {
          // Only text that templates do not trim: a template's own space next to a message's
          // trailing one would look like the message's.
          const std::string s = m["content"];
          if (s.size() > 3 && !std::isspace(static_cast<unsigned char>(s.front())) &&
              !std::isspace(static_cast<unsigned char>(s.back())))
            strings.push_back(s);
        }
      for (const std::string& s : strings) {
        for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + 1))
          for (size_t k = at; k < at + s.size(); ++k)
            ASSERT_TRUE(marks[k]) << file << " / " << conv["name"] << ": byte " << k << " of \"" << s
                                  << "\" is not data";
      }
      // The template's own control tokens are not.
      for (const std::string& tok : {entry.value("bos_token", ""), entry.value("eos_token", "")}) {
        if (tok.empty() || conv["name"] == "markup_in_content") continue;
        for (size_t at = text.find(tok); at != std::string::npos; at = text.find(tok, at + 1))
          EXPECT_FALSE(marks[at]) << file << " / " << conv["name"] << ": " << tok << " at " << at << " is data";
      }
    }
  }
}

}  // namespace
}  // namespace omni::model
