// gguf::File: a GGUF v2/v3 file, parsed and validated, with zero-copy access to tensor data.
//
// `open` maps the file read-only; tensor_data() returns views into that mapping, valid while the
// File lives (File is movable; views stay valid across moves). Every count, length, offset and size
// in the file is checked before it is used: a malformed file gives an Error that names the file and
// what is wrong, never a crash, a hang or an allocation larger than the file itself.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/mapped_file.h"
#include "base/result.h"
#include "gguf/types.h"
#include "gguf/value.h"

namespace omni::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr size_t kMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME less the terminator
inline constexpr uint32_t kMaxArrayNesting = 16;

struct TensorInfo {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<uint64_t> shape;  // ne[0] (contiguous, row length) first, as ggml orders it
  uint64_t n_elements = 0;
  uint64_t offset = 0;   // from the start of the data section
  uint64_t n_bytes = 0;  // exact payload bytes, without alignment padding

  uint64_t rows() const { return shape.empty() ? 0 : n_elements / shape[0]; }
};

class File {
 public:
  // Maps and parses `path`.
  static Result<File> open(const std::string& path);
  // Parses bytes owned by the caller, which must outlive the File. `name` is used in errors.
  static Result<File> parse(std::span<const uint8_t> bytes, std::string name);

  const std::string& name() const { return name_; }
  const std::string& path() const { return mapping_.path(); }  // empty for parse()d bytes
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of the data section
  const Metadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  std::span<const uint8_t> tensor_data(const TensorInfo& tensor) const;
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  MappedFile mapping_;
  std::span<const uint8_t> bytes_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;

  friend class Parser;
};

}  // namespace omni::gguf
