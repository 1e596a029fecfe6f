// Server-sent events framing (the WHATWG "text/event-stream" format) as OpenAI streams use it.
//
// An event is one or more "data:" lines and a blank line. A payload holding line breaks (CR, LF or
// CRLF) is split over several "data:" lines, which the client's parser joins back with "\n", so
// no payload can end an event early or inject a field. JSON payloads from nlohmann never hold a
// raw line break, but the framing does not rely on it.
#pragma once

#include <string>
#include <string_view>

namespace omni::gateway {

// "data: <payload>\n\n" (one data line per line of the payload).
std::string sse_event(std::string_view payload);
// The stream's end as OpenAI marks it: "data: [DONE]\n\n".
std::string sse_done();
// ": <text>\n\n", ignored by clients; keeps idle connections alive and probes for disconnects.
// Line breaks in `text` become spaces.
std::string sse_comment(std::string_view text);

}  // namespace omni::gateway
