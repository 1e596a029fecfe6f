// MappedFile: a whole file mapped read-only into memory.
//
// The mapping lives as long as the MappedFile; views into data() must not outlive it. Pages are
// loaded lazily by the kernel, so mapping a 40 GB model costs nothing until its bytes are touched.
// An empty file maps to an empty span (data() may be null).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace omni {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the path and the system's reason.
  static Result<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace omni
