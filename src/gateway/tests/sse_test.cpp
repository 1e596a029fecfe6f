#include "gateway/sse.h"

#include <gtest/gtest.h>

namespace omni::gateway {
namespace {

// A client's SSE parser (the WHATWG algorithm, data fields only): the payloads of the events.
std::vector<std::string> parse_events(const std::string& stream) {
  std::vector<std::string> events;
  std::string data;
  bool has_data = false;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t end = stream.find('\n', pos);
    if (end == std::string::npos) break;  // an unterminated line is not dispatched
    std::string line = stream.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      if (has_data) events.push_back(data);
      data.clear();
      has_data = false;
    } else if (line[0] == ':') {
      continue;
    } else if (line.rfind("data:", 0) == 0) {
      std::string value = line.substr(5);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (has_data) data += '\n';
      data += value;
      has_data = true;
    }
  }
  return events;
}

TEST(Sse, EventIsADataLineAndABlankLine) {
  EXPECT_EQ(sse_event(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(Sse, LineBreaksInPayloadsSurviveAsSeparateDataLines) {
  const std::string payload = "line one\nline two\r\nline three\rend";
  EXPECT_EQ(sse_event(payload), "data: line one\ndata: line two\ndata: line three\ndata: end\n\n");
  auto events = parse_events(sse_event(payload) + sse_event("next"));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], "line one\nline two\nline three\nend");
  EXPECT_EQ(events[1], "next");
}

TEST(Sse, PayloadCannotEndAnEventEarly) {
  auto events = parse_events(sse_event("a\n\ndata: injected") + sse_done());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], "a\n\ndata: injected");
  EXPECT_EQ(events[1], "[DONE]");
}

TEST(Sse, CommentsAreIgnoredByClientsAndStayOneLine) {
  EXPECT_EQ(sse_comment("keep\nalive"), ": keep alive\n\n");
  auto events = parse_events(sse_comment("x") + sse_event("y") + sse_comment("z"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "y");
}

TEST(Sse, EmptyPayloadIsAnEmptyEvent) {
  auto events = parse_events(sse_event(""));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "");
}

}  // namespace
}  // namespace omni::gateway
