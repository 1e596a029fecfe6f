// transfer_baseline: the capacity of the "link" a loopback shard transfer runs on, for
// bench/transfer.sh. Two plain TCP copies over loopback, sender and receiver threads in one process
// (so they share this machine's cores as `omni node` and `omni fetch` do), no TLS, no hashing:
//
//   transfer_baseline mem BYTES          memory to memory: 1 MiB sends, received into a buffer and
//                                        dropped; prints MiB/s.
//   transfer_baseline disk SRC_DIR DST   the files of SRC_DIR (a store's blobs/), each sent from a
//                                        read-only mapping, and written under DST the way the fetch
//                                        writes a blob: preallocated (fallocate), received into
//                                        page-aligned 1 MiB buffers that writer threads (as many as
//                                        the fetch's workers) write with O_DIRECT (a short last
//                                        piece through the page cache), then, off those threads,
//                                        fsync, rename into place and fsync of the directory;
//                                        prints MiB/s of file bytes, timed until the last file is
//                                        durable.
//
// The second figure is what a transfer to disk can reach here; the fetch's throughput is quoted
// as a fraction of it.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPiece = 1 << 20;


[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "transfer_baseline: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void send_all(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t k = ::send(fd, b, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("send");
    b += k;
    n -= static_cast<size_t>(k);
  }
}

void recv_all(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t k = ::recv(fd, b, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("recv");
    b += k;
    n -= static_cast<size_t>(k);
  }
}

// A connected loopback pair: {sender's socket, receiver's socket}.
std::pair<int, int> loopback_pair() {
  int srv = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (srv < 0 || ::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(srv, 1) != 0 ||
      ::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    die("listen");
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  int s = ::accept(srv, nullptr, nullptr);
  if (s < 0) die("accept");
  ::close(srv);
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as the node transport does
  return {c, s};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_mem(uint64_t bytes) {
  auto [tx, rx] = loopback_pair();
  auto t0 = std::chrono::steady_clock::now();
  std::thread sender([tx = tx, bytes] {
    std::vector<uint8_t> buf(kPiece, 1);
    for (uint64_t sent = 0; sent < bytes; sent += kPiece) send_all(tx, buf.data(), std::min<uint64_t>(kPiece, bytes - sent));
  });
  std::vector<uint8_t> buf(kPiece);
  for (uint64_t got = 0; got < bytes;) {
    ssize_t k = ::recv(rx, buf.data(), buf.size(), 0);
    if (k <= 0) die("recv");
    got += static_cast<uint64_t>(k);
  }
  const double secs = seconds_since(t0);
  sender.join();
  std::printf("%.1f\n", static_cast<double>(bytes) / secs / (1 << 20));
  return 0;
}

// One file being received: written by the writer threads, completed off the receiving thread once
// its last piece is written, as the fetch does (fsync, rename, fsync of the directory).
struct File {
  int fd = -1, direct_fd = -1;
  std::string tmp, final_path;
  uint64_t pieces_left = 0;
};

class Writers {
 public:
  Writers(unsigned threads, std::string dir) : dir_(std::move(dir)) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
    finisher_ = std::thread([this] { finish_loop(); });
  }
  void add(File* f, uint64_t offset, uint8_t* buf, size_t n) {
    std::unique_lock lock(mu_);
    // As the fetch: a bounded number of pieces in memory (its window).
    room_.wait(lock, [&] { return jobs_.size() < 16; });
    jobs_.push_back({f, offset, buf, n});
    cv_.notify_one();
  }
  uint8_t* buffer() {
    std::lock_guard lock(mu_);
    if (free_.empty()) return static_cast<uint8_t*>(std::aligned_alloc(4096, kPiece));  // page-aligned, as ChunkBuffer
    auto* b = free_.back();
    free_.pop_back();
    return b;
  }
  void close() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_) t.join();
    {
      std::lock_guard lock(mu_);
      finish_stop_ = true;
      finish_cv_.notify_all();
    }
    finisher_.join();
    for (auto* b : free_) std::free(b);
  }

 private:
  struct Job {
    File* file;
    uint64_t offset;
    uint8_t* buf;
    size_t n;
  };
  void run() {
    for (;;) {
      Job j;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        j = jobs_.front();
        jobs_.pop_front();
        room_.notify_one();
      }
      // Whole pages directly from the aligned buffer, a short tail through the page cache.
      const bool direct = j.file->direct_fd >= 0 && j.n % 4096 == 0;
      if (::pwrite(direct ? j.file->direct_fd : j.file->fd, j.buf, j.n, static_cast<off_t>(j.offset)) !=
          static_cast<ssize_t>(j.n))
        die("pwrite " + j.file->tmp);
      std::lock_guard lock(mu_);
      free_.push_back(j.buf);
      if (--j.file->pieces_left == 0) {
        done_.push_back(j.file);
        finish_cv_.notify_one();
      }
    }
  }
  void finish_loop() {
    for (;;) {
      File* f;
      {
        std::unique_lock lock(mu_);
        finish_cv_.wait(lock, [&] { return finish_stop_ || !done_.empty(); });
        if (done_.empty()) return;
        f = done_.front();
        done_.pop_front();
      }
      if (::fsync(f->fd) != 0) die("fsync");
      if (f->direct_fd >= 0) ::close(f->direct_fd);
      ::close(f->fd);
      if (::rename(f->tmp.c_str(), f->final_path.c_str()) != 0) die("rename");
      int d = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
      if (d < 0 || ::fsync(d) != 0) die("fsync " + dir_);
      ::close(d);
    }
  }
  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_, room_, finish_cv_;
  std::deque<Job> jobs_;
  std::deque<File*> done_;
  std::vector<uint8_t*> free_;
  bool stop_ = false, finish_stop_ = false;
  std::vector<std::thread> threads_;
  std::thread finisher_;
};

int run_disk(const std::string& src, const std::string& dst) {
  std::vector<std::pair<std::string, uint64_t>> files;
  DIR* d = ::opendir(src.c_str());
  if (!d) die(src);
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    struct stat st;
    if (n == "." || n == ".." || ::stat((src + "/" + n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    files.emplace_back(n, static_cast<uint64_t>(st.st_size));
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());
  for (const char* sub : {"", "/blobs", "/tmp"})
    if (::mkdir((dst + sub).c_str(), 0755) != 0 && errno != EEXIST) die(dst + sub);

  auto [tx, rx] = loopback_pair();
  auto t0 = std::chrono::steady_clock::now();
  std::thread sender([tx = tx, &files, &src] {
    for (const auto& [name, size] : files) {
      int fd = ::open((src + "/" + name).c_str(), O_RDONLY);
      if (fd < 0) die(name);
      void* m = size ? ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
      if (m == MAP_FAILED) die("mmap " + name);
      ::close(fd);
      for (uint64_t off = 0; off < size; off += kPiece)
        send_all(tx, static_cast<const uint8_t*>(m) + off, std::min<uint64_t>(kPiece, size - off));
      if (m) ::munmap(m, size);
    }
  });
  // As many writers as the fetch has workers (store/fetch.cpp): one per CPU plus two, 4 to 16.
  Writers writers(std::clamp(std::thread::hardware_concurrency() + 2, 4u, 16u), dst + "/blobs");
  std::deque<File> open_files;
  uint64_t total = 0;
  for (const auto& [name, size] : files) {
    File& f = open_files.emplace_back();
    f.tmp = dst + "/tmp/" + name;
    f.final_path = dst + "/blobs/" + name;
    f.fd = ::open(f.tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) die(f.tmp);
    if (size > 0 && ::fallocate(f.fd, 0, 0, static_cast<off_t>(size)) != 0) die("fallocate " + f.tmp);
    f.direct_fd = ::open(f.tmp.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    f.pieces_left = (size + kPiece - 1) / kPiece;
    if (f.pieces_left == 0) {
      ::close(f.fd);
      continue;
    }
    for (uint64_t off = 0; off < size; off += kPiece) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, size - off));
      auto* buf = writers.buffer();
      recv_all(rx, buf, n);
      writers.add(&f, off, buf, n);
    }
    total += size;
  }
  writers.close();
  const double secs = seconds_since(t0);
  sender.join();
  std::printf("%.1f\n", static_cast<double>(total) / secs / (1 << 20));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "mem" && argc == 3) return run_mem(std::strtoull(argv[2], nullptr, 10));
  if (mode == "disk" && argc == 4) return run_disk(argv[2], argv[3]);
  std::fprintf(stderr, "usage: transfer_baseline mem BYTES | disk SRC_DIR DST_DIR\n");
  return 2;
}
