#include "net/relay_splice.h"

#include <kj/debug.h>

#include <cstdio>

#include "net/errors.h"

namespace omni::net {
namespace {

// 64 KiB covers a TLS record (16 KiB) several times over, so a large hidden-state message moves in
// a few reads, and two such buffers per relayed connection keep a relay's memory small.
constexpr size_t kBufferBytes = 64 * 1024;

std::string seconds_text(kj::Duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(d / kj::MILLISECONDS) / 1000.0);
  return text;
}

struct Splice {
  Splice(kj::Own<kj::AsyncIoStream> first, kj::Own<kj::AsyncIoStream> second, kj::Timer& t, const SpliceOptions& o,
         std::shared_ptr<SpliceCounters> c)
      : a(kj::mv(first)),
        b(kj::mv(second)),
        timer(t),
        options(o),
        counters(kj::mv(c)),
        last(t.now()),
        buffer_ab(kj::heapArray<kj::byte>(kBufferBytes)),
        buffer_ba(kj::heapArray<kj::byte>(kBufferBytes)) {}

  kj::Own<kj::AsyncIoStream> a, b;
  kj::Timer& timer;
  SpliceOptions options;
  std::shared_ptr<SpliceCounters> counters;
  kj::TimePoint last;
  kj::Array<kj::byte> buffer_ab, buffer_ba;
  kj::Own<kj::PromiseFulfiller<std::string>> failed;
  kj::Own<kj::PromiseFulfiller<void>> half_closed;  // fulfilled by the first direction to end

  kj::Promise<void> pump(kj::AsyncIoStream& from, kj::AsyncIoStream& to, kj::ArrayPtr<kj::byte> buffer,
                         uint64_t& count) {
    return from.tryRead(buffer.begin(), 1, buffer.size())
        .then([this, &from, &to, buffer, &count](size_t n) -> kj::Promise<void> {
          if (n == 0) {
            to.shutdownWrite();
            if (half_closed->isWaiting()) half_closed->fulfill();
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
    return timer.atTime(last + options.idle_timeout).then([this]() -> kj::Promise<std::string> {
      if (timer.now() - last >= options.idle_timeout) return "idle for " + seconds_text(options.idle_timeout);
      return watch_idle();
    });
  }

  kj::Promise<std::string> watch_first_byte() {
    if (options.first_byte_timeout <= 0 * kj::SECONDS) return kj::NEVER_DONE;
    return timer.afterDelay(options.first_byte_timeout).then([this]() -> kj::Promise<std::string> {
      if (counters->b_to_a == 0) return "no first byte within " + seconds_text(options.first_byte_timeout);
      return kj::NEVER_DONE;
    });
  }

  void fail(const kj::Exception& e) {
    if (failed->isWaiting()) failed->fulfill(to_error(e).message);
  }
};

}  // namespace

kj::Promise<SpliceResult> splice(kj::Own<kj::AsyncIoStream> a, kj::Own<kj::AsyncIoStream> b, kj::Timer& timer,
                                 const SpliceOptions& options, std::shared_ptr<SpliceCounters> counters) {
  auto s = kj::heap<Splice>(kj::mv(a), kj::mv(b), timer, options, kj::mv(counters));
  auto failure = kj::newPromiseAndFulfiller<std::string>();
  s->failed = kj::mv(failure.fulfiller);
  auto half = kj::newPromiseAndFulfiller<void>();
  s->half_closed = kj::mv(half.fulfiller);
  Splice* raw = s.get();
  // Once one direction has ended, the other has `linger` to end too.
  const kj::Duration linger = options.linger;
  kj::Promise<std::string> lingered = half.promise.then([raw, linger] { return raw->timer.afterDelay(linger); })
                                          .then([linger] {
                                            return "one side closed, the other did not within " + seconds_text(linger);
                                          });
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
      .exclusiveJoin(raw->watch_first_byte())
      .exclusiveJoin(kj::mv(lingered))
      .then([raw](std::string ended) {
        return SpliceResult{raw->counters->a_to_b, raw->counters->b_to_a, kj::mv(ended)};
      })
      .attach(kj::mv(s));
}

}  // namespace omni::net
