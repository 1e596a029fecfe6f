#include "gguf/writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "base/system_error.h"

namespace omni::gguf {
namespace {

class Bytes {
 public:
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  }
  void put(const void* p, size_t n) {
    // resize + memcpy rather than insert: GCC 12 at -O3 warns falsely (stringop-overflow) on insert.
    if (n == 0) return;
    const size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
  }
  std::vector<uint8_t> out;
};

void encode_array(Bytes& b, const Array& a) {
  b.u32(static_cast<uint32_t>(a.elem_type));
  b.u64(a.size());
  if (a.elem_type == ValueType::STRING) {
    for (const std::string& s : a.strings) b.str(s);
  } else if (a.elem_type == ValueType::ARRAY) {
    for (const Array& inner : a.arrays) encode_array(b, inner);
  } else {
    b.put(a.raw.data(), a.raw.size());
  }
}

void encode_value(Bytes& b, const Value& v) {
  b.u32(static_cast<uint32_t>(v.type()));
  if (v.type() == ValueType::STRING) {
    b.str(*v.as_string());
  } else if (v.type() == ValueType::ARRAY) {
    encode_array(b, *v.as_array());
  } else {
    uint64_t bits = v.bits();
    b.put(&bits, *value_type_size(static_cast<uint32_t>(v.type())));
  }
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Writes to a file descriptor through a buffer; with `sparse`, zero runs are skipped with lseek so
// they become holes.
class FdOutput {
 public:
  FdOutput(int fd, std::string path, bool sparse) : fd_(fd), path_(std::move(path)), sparse_(sparse) {
    buffer_.reserve(kBufferBytes);
  }

  Result<void> write(const uint8_t* p, size_t n) {
    while (n > 0) {
      size_t take = std::min(n, kBufferBytes - buffer_.size());
      buffer_.insert(buffer_.end(), p, p + take);
      p += take;
      n -= take;
      position_ += take;
      if (buffer_.size() == kBufferBytes)
        if (auto r = flush(); !r) return r;
    }
    return {};
  }

  // Moves the position forward to `target`, writing zeros (or leaving a hole when sparse).
  Result<void> pad_to(uint64_t target) {
    if (!sparse_) {
      static const uint8_t zeros[4096] = {};
      while (position_ < target) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof zeros, target - position_));
        if (auto r = write(zeros, n); !r) return r;
      }
      return {};
    }
    if (auto r = flush(); !r) return r;
    if (::lseek(fd_, static_cast<off_t>(target), SEEK_SET) < 0) return system_error("seek");
    position_ = target;
    return {};
  }

  Result<void> finish() {
    if (auto r = flush(); !r) return r;
    // A sparse file may end in a hole: give it its full length.
    if (::ftruncate(fd_, static_cast<off_t>(position_)) != 0) return system_error("set the size of");
    if (::fsync(fd_) != 0) return system_error("sync");
    return {};
  }

  uint64_t position() const { return position_; }

 private:
  static constexpr size_t kBufferBytes = 4 << 20;

  Result<void> flush() {
    size_t done = 0;
    while (done < buffer_.size()) {
      ssize_t w = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        return system_error("write");
      }
      done += static_cast<size_t>(w);
    }
    buffer_.clear();
    return {};
  }

  Error system_error(const char* what) const {
    return errno_error(errno, path_ + ": cannot " + what);
  }

  int fd_;
  std::string path_;
  bool sparse_;
  std::vector<uint8_t> buffer_;
  uint64_t position_ = 0;
};

// Forwards one tensor's bytes to an output and checks the count.
template <class Output>
class CountingSink : public TensorSink {
 public:
  CountingSink(Output& out, const TensorInfo& tensor) : out_(out), tensor_(tensor) {}
  Result<void> write(std::span<const uint8_t> bytes) override {
    if (bytes.size() > tensor_.n_bytes - written_)
      return Error{ErrorCode::Internal, "tensor '" + tensor_.name + "': source wrote more than its " +
                                            std::to_string(tensor_.n_bytes) + " bytes"};
    written_ += bytes.size();
    return out_.write(bytes.data(), bytes.size());
  }
  uint64_t written() const { return written_; }

 private:
  Output& out_;
  const TensorInfo& tensor_;
  uint64_t written_ = 0;
};

class MemoryOutput {
 public:
  Result<void> write(const uint8_t* p, size_t n) {
    bytes.insert(bytes.end(), p, p + n);
    return {};
  }
  Result<void> pad_to(uint64_t target) {
    bytes.resize(target, 0);
    return {};
  }
  uint64_t position() const { return bytes.size(); }
  std::vector<uint8_t> bytes;
};

class StreamOutput {
 public:
  explicit StreamOutput(const Writer::ByteStream& out) : out_(out) {}
  Result<void> write(const uint8_t* p, size_t n) {
    position_ += n;
    return out_({p, n});
  }
  Result<void> pad_to(uint64_t target) {
    static constexpr uint8_t kZeros[256] = {};
    while (position_ < target) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof kZeros, target - position_));
      if (auto r = write(kZeros, n); !r) return r;
    }
    return {};
  }
  uint64_t position() const { return position_; }

 private:
  const Writer::ByteStream& out_;
  uint64_t position_ = 0;
};

template <class Output>
Result<void> write_body(Output& out, const std::vector<uint8_t>& header, const std::vector<TensorInfo>& tensors,
                        uint64_t alignment, const TensorSource& source, bool sparse) {
  if (auto r = out.write(header.data(), header.size()); !r) return r;
  uint64_t data_start = out.position();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    if (auto r = out.pad_to(data_start + t.offset); !r) return r;
    CountingSink<Output> sink(out, t);
    if (auto r = source(i, sink); !r) return r;
    if (sink.written() != t.n_bytes) {
      if (!sparse || sink.written() != 0)
        return Error{ErrorCode::Internal, "tensor '" + t.name + "': source wrote " + std::to_string(sink.written()) +
                                              " of its " + std::to_string(t.n_bytes) + " bytes"};
    }
    if (auto r = out.pad_to(align_up(data_start + t.offset + t.n_bytes, alignment)); !r) return r;
  }
  return {};
}

}  // namespace

Result<uint64_t> Writer::alignment() const {
  const Value* v = metadata_.find("general.alignment");
  if (!v) return kDefaultAlignment;
  auto a = v->as_uint();
  if (v->type() != ValueType::UINT32 || !a || *a == 0 || (*a & (*a - 1)) != 0)
    return Error{ErrorCode::InvalidArgument, "general.alignment must be a u32 power of two, got " + v->to_display()};
  return *a;
}

Result<size_t> Writer::add_tensor(TensorSpec spec) {
  auto fail = [&](const std::string& what) {
    return Error{ErrorCode::InvalidArgument, "tensor '" + spec.name + "': " + what};
  };
  if (spec.name.empty()) return Error{ErrorCode::InvalidArgument, "tensor with an empty name"};
  if (spec.name.size() > kMaxTensorNameBytes) return fail("name is longer than 63 bytes");
  for (const TensorInfo& t : tensors_)
    if (t.name == spec.name) return fail("duplicate tensor name");
  if (spec.shape.empty() || spec.shape.size() > kMaxDims) return fail("must have 1 to 4 dimensions");
  auto traits = tensor_type_traits(spec.type);
  if (!traits) return fail("unknown tensor type " + std::to_string(static_cast<uint32_t>(spec.type)));
  TensorInfo t;
  t.n_elements = 1;
  for (uint64_t ne : spec.shape)
    if (__builtin_mul_overflow(t.n_elements, ne, &t.n_elements) ||
        t.n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail("element count overflows");
  if (spec.shape[0] % traits->block_size != 0)
    return fail("row length " + std::to_string(spec.shape[0]) + " is not a multiple of the block size " +
                std::to_string(traits->block_size));
  if (__builtin_mul_overflow(t.n_elements / traits->block_size, traits->type_size, &t.n_bytes))
    return fail("byte size overflows");
  t.name = std::move(spec.name);
  t.type = spec.type;
  t.shape = std::move(spec.shape);
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

Result<std::vector<uint8_t>> Writer::header() const {
  auto align = alignment();
  if (!align) return align.error();
  Bytes b;
  b.u32(kMagic);
  b.u32(version_);
  b.u64(tensors_.size());
  b.u64(metadata_.size());
  for (const auto& e : metadata_.entries()) {
    b.str(e.key);
    encode_value(b, e.value);
  }
  uint64_t offset = 0;
  for (const TensorInfo& t : tensors_) {
    b.str(t.name);
    b.u32(static_cast<uint32_t>(t.shape.size()));
    for (uint64_t ne : t.shape) b.u64(ne);
    b.u32(static_cast<uint32_t>(t.type));
    b.u64(offset);
    offset = align_up(offset + t.n_bytes, *align);
  }
  // ggml pads the header only when tensor data follows it.
  if (!tensors_.empty()) b.out.resize(align_up(b.out.size(), *align), 0);
  return std::move(b.out);
}

namespace {
// Offsets follow from the order and sizes; header() and the body must agree, so both use this.
void assign_offsets(std::vector<TensorInfo>& tensors, uint64_t alignment) {
  uint64_t offset = 0;
  for (TensorInfo& t : tensors) {
    t.offset = offset;
    offset = align_up(offset + t.n_bytes, alignment);
  }
}
}  // namespace

Result<void> Writer::write_file(const std::string& path, const TensorSource& source, bool sparse) {
  auto head = header();
  if (!head) return head.error();
  assign_offsets(tensors_, *alignment());
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(errno, tmp + ": cannot create");
  FdOutput out(fd, tmp, sparse);
  Result<void> r = write_body(out, *head, tensors_, *alignment(), source, sparse);
  if (r) r = out.finish();
  ::close(fd);
  if (r && ::rename(tmp.c_str(), path.c_str()) != 0)
    r = errno_error(errno, path + ": cannot rename the finished file into place");
  if (!r) ::unlink(tmp.c_str());
  return r;
}

Result<std::vector<uint8_t>> Writer::write_memory(const TensorSource& source) {
  auto head = header();
  if (!head) return head.error();
  assign_offsets(tensors_, *alignment());
  MemoryOutput out;
  if (auto r = write_body(out, *head, tensors_, *alignment(), source, false); !r) return r.error();
  return std::move(out.bytes);
}

Result<void> Writer::write_stream(const ByteStream& stream, const TensorSource& source) {
  auto head = header();
  if (!head) return head.error();
  assign_offsets(tensors_, *alignment());
  StreamOutput out(stream);
  return write_body(out, *head, tensors_, *alignment(), source, false);
}

Result<Writer> Writer::from_file(const File& file) {
  Writer w(file.version());
  for (const auto& e : file.metadata().entries()) w.metadata().set(e.key, e.value);
  for (const TensorInfo& t : file.tensors()) {
    auto r = w.add_tensor({t.name, t.type, t.shape});
    if (!r) return r.error();
  }
  return w;
}

TensorSource Writer::copy_from(const File& file) {
  return [&file](size_t index, TensorSink& sink) -> Result<void> {
    return sink.write(file.tensor_data(file.tensors()[index]));
  };
}

}  // namespace omni::gguf
