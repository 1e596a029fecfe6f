// gguf::Writer: builds a GGUF v3 (or v2) file from metadata and tensors.
//
// The header (metadata and tensor infos) is built in memory; tensor data is streamed to the file
// one tensor at a time through a callback, so a 140 GB model can be written with a few MB of RAM.
// Layout follows ggml: each tensor's data starts at a multiple of the alignment (`general.alignment`
// if set, else 32) and is zero-padded to the next multiple; a file without tensors ends right after
// its metadata. A file written from a File's metadata,
// tensor infos and data is byte-identical to a file written the same way by ggml.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "gguf/reader.h"
#include "gguf/types.h"
#include "gguf/value.h"

namespace omni::gguf {

struct TensorSpec {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<uint64_t> shape;  // ne[0] first
};

// Receives a tensor's bytes in order; the writer checks that exactly n_bytes arrive.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  virtual Result<void> write(std::span<const uint8_t> bytes) = 0;
};

// Fills tensor `index` (in add order) by writing its bytes to the sink.
using TensorSource = std::function<Result<void>(size_t index, TensorSink& sink)>;

class Writer {
 public:
  explicit Writer(uint32_t version = 3) : version_(version) {}

  Metadata& metadata() { return metadata_; }
  const Metadata& metadata() const { return metadata_; }

  // Adds a tensor; checks the name (unique, <= 63 bytes), the shape (1..4 dims, row a whole number
  // of blocks, no overflow) and returns its index.
  Result<size_t> add_tensor(TensorSpec spec);
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  // The alignment the file will use; an error if general.alignment is set but not a power of two.
  Result<uint64_t> alignment() const;

  // Writes the file to `path` atomically (temporary file, fsync, rename): either the complete new
  // file is there or nothing changed. With `sparse`, data regions the source leaves unwritten are
  // holes (they read as zeros) — the source may then write nothing at all.
  Result<void> write_file(const std::string& path, const TensorSource& source, bool sparse = false);
  // Writes the whole file to memory (tests, small files).
  Result<std::vector<uint8_t>> write_memory(const TensorSource& source);
  // Hands the file's bytes, in order, to `out` (padding included): what write_file would write,
  // without a file, e.g. to hash it. An error from `out` stops the write and is returned.
  using ByteStream = std::function<Result<void>(std::span<const uint8_t> bytes)>;
  Result<void> write_stream(const ByteStream& out, const TensorSource& source);

  // A Writer holding `file`'s metadata and tensor infos, and a source that copies its tensor data.
  static Result<Writer> from_file(const File& file);
  static TensorSource copy_from(const File& file);

 private:
  Result<std::vector<uint8_t>> header() const;

  uint32_t version_;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace omni::gguf
