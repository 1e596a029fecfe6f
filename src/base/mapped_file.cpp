#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/system_error.h"

namespace omni {
namespace {

// Maps the file at a 2 MiB-aligned address and asks for huge pages: where the page cache holds the
// file in large folios (recent kernels, after a read), the kernel then maps them with 2 MiB pages,
// so streaming the weights costs far fewer TLB misses and the hardware prefetchers are not stopped
// at every 4 KiB boundary. MAP_FAILED if the address space could not be arranged.
void* map_huge_aligned(int fd, size_t size) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t reserved = (size + kHuge + page - 1) / page * page;
  void* reserve = ::mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return MAP_FAILED;
  auto* base = static_cast<uint8_t*>(reserve);
  auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~uintptr_t{kHuge - 1});
  void* p = ::mmap(aligned, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    ::munmap(reserve, reserved);
    return MAP_FAILED;
  }
  // Give back the reservation around the mapping.
  if (aligned > base) ::munmap(base, static_cast<size_t>(aligned - base));
  uint8_t* mapped_end = aligned + (size + page - 1) / page * page;
  if (base + reserved > mapped_end) ::munmap(mapped_end, static_cast<size_t>(base + reserved - mapped_end));
  ::madvise(p, size, MADV_HUGEPAGE);
  return p;
}

}  // namespace

Result<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, path + ": cannot open");
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return errno_error(err, path + ": cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{ErrorCode::InvalidArgument, path + ": not a regular file"};
  }
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ > 0) {
    void* p = map_huge_aligned(fd, file.size_);
    if (p == MAP_FAILED) p = ::mmap(nullptr, file.size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return errno_error(err, path + ": cannot map");
    }
    file.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps its own reference to the file
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace omni
