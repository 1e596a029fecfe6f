#include "net/relay_splice.h"

#include <kj/debug.h>

#include <cstdio>

#include "net/errors.h"

namespace omni::net {
namespace {

// 64 KiB covers a TLS record (16 KiB) several times over, so a large hidden-state message moves in
// a few reads, and two such buffers per relayed connection keep a relay's memory small.
constexpr size_t kBufferBytes = 64 * 1024;

struct Splice {
  Splice(kj::Own<kj::AsyncIoStream> first, kj::Own<kj::AsyncIoStream> second, kj::Timer& t, kj::Duration idle_timeout,
         std::shared_ptr<SpliceCounters> c)
      : a(kj::mv(first)),
        b(kj::mv(second)),
        timer(t),
        idle(idle_timeout),
        counters(kj::mv(c)),
        last(t.now()),
        buffer_ab(kj::heapArray<kj::byte>(kBufferBytes)),
        buffer_ba(kj::heapArray<kj::byte>(kBufferBytes)) {}

  kj::Own<kj::AsyncIoStream> a, b;
  kj::Timer& timer;
  kj::Duration idle;
  std::shared_ptr<SpliceCounters> counters;
  kj::TimePoint last;
  kj::Array<kj::byte> buffer_ab, buffer_ba;
  kj::Own<kj::PromiseFulfiller<std::string>> failed;

  kj::Promise<void> pump(kj::AsyncIoStream& from, kj::AsyncIoStream& to, kj::ArrayPtr<kj::byte> buffer,
                         uint64_t& count) {
    return from.tryRead(buffer.begin(), 1, buffer.size())
        .then([this, &from, &to, buffer, &count](size_t n) -> kj::Promise<void> {
          if (n == 0) {
            to.shutdownWrite();
            return kj::READY_NOW;
          }
          count += n;
          last = timer.now();
          return to.write(buffer.begin(), n).then([this, &from, &to, buffer, &count] {
            return pump(from, to, buffer, count);
          });
        });
  }

  // Wakes when the idle deadline of the last activity passes; re-arms if bytes moved meanwhile.
  kj::Promise<std::string> watch_idle() {
    return timer.atTime(last + idle).then([this]() -> kj::Promise<std::string> {
      if (timer.now() - last >= idle) {
        char text[48];
        std::snprintf(text, sizeof text, "idle for %.1f s", static_cast<double>(idle / kj::MILLISECONDS) / 1000.0);
        return std::string(text);
      }
      return watch_idle();
    });
  }

  void fail(const kj::Exception& e) {
    if (failed->isWaiting()) failed->fulfill(to_error(e).message);
  }
};

}  // namespace

kj::Promise<SpliceResult> splice(kj::Own<kj::AsyncIoStream> a, kj::Own<kj::AsyncIoStream> b, kj::Timer& timer,
                                 kj::Duration idle_timeout, std::shared_ptr<SpliceCounters> counters) {
  auto s = kj::heap<Splice>(kj::mv(a), kj::mv(b), timer, idle_timeout, kj::mv(counters));
  auto failure = kj::newPromiseAndFulfiller<std::string>();
  s->failed = kj::mv(failure.fulfiller);
  Splice* raw = s.get();
  // A failed direction ends the whole splice (through `failed`), not just itself: the other
  // direction may be waiting for bytes that will never come. Evaluated eagerly: kj's join would
  // run the error handlers only once both directions are done.
  auto ab = raw->pump(*raw->a, *raw->b, raw->buffer_ab, raw->counters->a_to_b)
                .catch_([raw](kj::Exception&& e) { raw->fail(e); })
                .eagerlyEvaluate(nullptr);
  auto ba = raw->pump(*raw->b, *raw->a, raw->buffer_ba, raw->counters->b_to_a)
                .catch_([raw](kj::Exception&& e) { raw->fail(e); })
                .eagerlyEvaluate(nullptr);
  auto both = kj::heapArrayBuilder<kj::Promise<void>>(2);
  both.add(kj::mv(ab));
  both.add(kj::mv(ba));
  kj::Promise<std::string> closed = kj::joinPromises(both.finish()).then([]() -> std::string { return "closed"; });
  return closed.exclusiveJoin(kj::mv(failure.promise))
      .exclusiveJoin(raw->watch_idle())
      .then([raw](std::string ended) {
        return SpliceResult{raw->counters->a_to_b, raw->counters->b_to_a, kj::mv(ended)};
      })
      .attach(kj::mv(s));
}

}  // namespace omni::net
