#include "net/throttled_stream.h"

#include <algorithm>

namespace omni::net {
namespace {

class ThrottledStream final : public kj::AsyncIoStream {
 public:
  ThrottledStream(kj::Own<kj::AsyncIoStream> inner, std::shared_ptr<Bandwidth> bandwidth, kj::Timer& timer)
      : inner_(kj::mv(inner)), bandwidth_(std::move(bandwidth)), timer_(timer) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(bandwidth_->download_piece(), SIZE_MAX));
    const size_t most = std::max(min_bytes, std::min(max_bytes, piece));
    return inner_->tryRead(buffer, min_bytes, most).then([this](size_t n) -> kj::Promise<size_t> {
      return after(bandwidth_->take_download(n)).then([n] { return n; });
    });
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    return write_from(static_cast<const kj::byte*>(buffer), size);
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return write_pieces(pieces, 0);
  }

  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override { inner_->getsockname(addr, length); }
  void getpeername(struct sockaddr* addr, kj::uint* length) override { inner_->getpeername(addr, length); }

 private:
  kj::Promise<void> after(Nanos wait) {
    if (wait <= 0) return kj::READY_NOW;
    return timer_.afterDelay(wait * kj::NANOSECONDS);
  }

  kj::Promise<void> write_from(const kj::byte* p, size_t size) {
    if (size == 0) return kj::READY_NOW;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, bandwidth_->upload_piece()));
    return after(bandwidth_->take_upload(n)).then([this, p, n, size] {
      return inner_->write(p, n).then([this, p, n, size] { return write_from(p + n, size - n); });
    });
  }

  kj::Promise<void> write_pieces(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, size_t i) {
    if (i == pieces.size()) return kj::READY_NOW;
    return write_from(pieces[i].begin(), pieces[i].size()).then([this, pieces, i] {
      return write_pieces(pieces, i + 1);
    });
  }

  kj::Own<kj::AsyncIoStream> inner_;
  std::shared_ptr<Bandwidth> bandwidth_;
  kj::Timer& timer_;
};

}  // namespace

kj::Own<kj::AsyncIoStream> throttle(kj::Own<kj::AsyncIoStream> stream, std::shared_ptr<Bandwidth> bandwidth,
                                    kj::Timer& timer) {
  if (!bandwidth || (bandwidth->max_upload() == 0 && bandwidth->max_download() == 0)) return stream;
  return kj::heap<ThrottledStream>(kj::mv(stream), std::move(bandwidth), timer);
}

}  // namespace omni::net
