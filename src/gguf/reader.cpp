#include "gguf/reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace omni::gguf {
namespace {

// Thrown inside the parser only; File::parse turns it into an Error.
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// Minimum encoded size of one value of each kind, used to reject counts the file cannot hold
// before anything is allocated for them.
constexpr uint64_t kMinStringBytes = 8;        // u64 length
constexpr uint64_t kMinArrayBytes = 4 + 8;     // elem type + count
constexpr uint64_t kMinKeyValueBytes = 8 + 4;  // key length + value type (+ the value)
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name len, n_dims, one dim, type, offset
constexpr uint64_t kMaxKeyBytes = 65535;        // the GGUF spec's limit on key length

}  // namespace

class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, File& out) : bytes_(bytes), out_(out) {}

  void run() {
    if (bytes_.size() < 4) fail("file is too small to be GGUF (" + std::to_string(bytes_.size()) + " bytes)");
    uint32_t magic = read_u32("magic");
    if (magic != kMagic) {
      char text[5] = {};
      std::memcpy(text, bytes_.data(), 4);
      for (char& c : text)
        if (c && (c < 0x20 || c > 0x7e)) c = '?';
      fail("bad magic '" + std::string(text) + "': not a GGUF file");
    }
    uint32_t version = read_u32("version");
    if (version == 0x02000000u || version == 0x03000000u)
      fail("big-endian GGUF files are not supported");
    if (version == 1) fail("GGUF version 1 is not supported (only versions 2 and 3)");
    if (version != 2 && version != 3) fail("unsupported GGUF version " + std::to_string(version));
    out_.version_ = version;

    uint64_t n_tensors = read_u64("tensor count");
    uint64_t n_kv = read_u64("metadata count");
    check_count(n_tensors, kMinTensorInfoBytes, "tensor count");
    check_count(n_kv, kMinKeyValueBytes + 1, "metadata key-value count");

    for (uint64_t i = 0; i < n_kv; ++i) read_key_value();
    read_alignment();
    read_tensor_infos(n_tensors);
    place_data();
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError(what + " (at byte offset " + std::to_string(pos_) + ")");
  }

  uint64_t remaining() const { return bytes_.size() - pos_; }

  void need(uint64_t n, const char* what) {
    if (n > remaining())
      fail(std::string("truncated file: ") + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left");
  }

  template <class T>
  T read_scalar(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint32_t read_u32(const char* what) { return read_scalar<uint32_t>(what); }
  uint64_t read_u64(const char* what) { return read_scalar<uint64_t>(what); }

  // Rejects `count` items of at least `min_bytes` each when the rest of the file cannot hold them.
  void check_count(uint64_t count, uint64_t min_bytes, const char* what) {
    if (count > remaining() / min_bytes)
      fail(std::string(what) + " " + std::to_string(count) + " is impossible: only " +
           std::to_string(remaining()) + " bytes remain (truncated or corrupt file)");
  }

  std::string read_string(const char* what) {
    uint64_t len = read_u64(what);
    if (len > remaining())
      fail(std::string(what) + " length " + std::to_string(len) +
           " runs past the end of the file (truncated or corrupt file)");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  ValueType read_value_type(const std::string& key) {
    uint32_t t = read_u32("value type");
    if (!value_type_size(t)) fail("metadata key '" + key + "' has unknown value type " + std::to_string(t));
    return static_cast<ValueType>(t);
  }

  void check_bool(uint8_t b, const std::string& key) {
    if (b > 1) fail("metadata key '" + key + "' has a bool that is neither 0 nor 1 (" + std::to_string(b) + ")");
  }

  Array read_array(const std::string& key, uint32_t depth) {
    if (depth > kMaxArrayNesting)
      fail("metadata key '" + key + "' nests arrays deeper than " + std::to_string(kMaxArrayNesting));
    Array a;
    a.elem_type = read_value_type(key);
    uint64_t count = read_u64("array length");
    uint32_t width = *value_type_size(static_cast<uint32_t>(a.elem_type));
    switch (a.elem_type) {
      case ValueType::STRING:
        check_count(count, kMinStringBytes, ("array length of '" + key + "'").c_str());
        a.strings.reserve(count);
        for (uint64_t i = 0; i < count; ++i) a.strings.push_back(read_string("array string"));
        break;
      case ValueType::ARRAY:
        check_count(count, kMinArrayBytes, ("array length of '" + key + "'").c_str());
        a.arrays.reserve(count);
        for (uint64_t i = 0; i < count; ++i) a.arrays.push_back(read_array(key, depth + 1));
        break;
      default: {
        check_count(count, width, ("array length of '" + key + "'").c_str());
        const uint8_t* p = bytes_.data() + pos_;
        a.raw.assign(p, p + count * width);
        if (a.elem_type == ValueType::BOOL)
          for (uint8_t b : a.raw) check_bool(b, key);
        pos_ += count * width;
      }
    }
    return a;
  }

  void read_key_value() {
    size_t key_at = pos_;
    std::string key = read_string("metadata key");
    if (key.size() > kMaxKeyBytes) {
      pos_ = key_at;
      fail("metadata key of " + std::to_string(key.size()) + " bytes exceeds the 65535-byte limit");
    }
    if (out_.metadata_.contains(key)) {
      pos_ = key_at;
      fail("duplicate metadata key '" + key + "'");
    }
    ValueType type = read_value_type(key);
    Value value;
    if (type == ValueType::STRING) {
      value = Value::string(read_string("string value"));
    } else if (type == ValueType::ARRAY) {
      value = Value::array(read_array(key, 1));
    } else {
      uint32_t width = *value_type_size(static_cast<uint32_t>(type));
      need(width, "metadata value");
      uint64_t bits = 0;
      std::memcpy(&bits, bytes_.data() + pos_, width);
      if (type == ValueType::BOOL) check_bool(static_cast<uint8_t>(bits), key);
      pos_ += width;
      value = Value::from_bits(type, bits);
    }
    out_.metadata_.set(std::move(key), std::move(value));
  }

  void read_alignment() {
    const Value* v = out_.metadata_.find("general.alignment");
    if (!v) return;
    if (v->type() != ValueType::UINT32)
      fail("general.alignment has type " + std::string(value_type_name(v->type())) + ", expected u32");
    uint64_t a = *v->as_uint();
    if (a == 0 || (a & (a - 1)) != 0)
      fail("general.alignment " + std::to_string(a) + " is not a power of two");
    out_.alignment_ = a;
  }

  void read_tensor_infos(uint64_t n_tensors) {
    std::unordered_set<std::string> names;
    out_.tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      size_t info_at = pos_;
      TensorInfo t;
      t.name = read_string("tensor name");
      auto at_info = [&](const std::string& what) {
        pos_ = info_at;
        fail("tensor '" + t.name + "': " + what);
      };
      if (t.name.empty()) at_info("empty tensor name");
      if (t.name.size() > kMaxTensorNameBytes)
        at_info("name is " + std::to_string(t.name.size()) + " bytes, more than ggml's limit of " +
                std::to_string(kMaxTensorNameBytes));
      if (!names.insert(t.name).second) at_info("duplicate tensor name");

      uint32_t n_dims = read_u32("tensor dimension count");
      if (n_dims == 0 || n_dims > kMaxDims)
        at_info("has " + std::to_string(n_dims) + " dimensions, expected 1 to " + std::to_string(kMaxDims));
      t.n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t ne = read_u64("tensor dimension");
        if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          at_info("dimension " + std::to_string(d) + " is too large (" + std::to_string(ne) + ")");
        if (mul_overflows(t.n_elements, ne, &t.n_elements) ||
            t.n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          at_info("element count overflows");
        t.shape.push_back(ne);
      }
      uint32_t type = read_u32("tensor type");
      auto traits = tensor_type_traits(type);
      if (!traits) at_info("unknown tensor type " + std::to_string(type));
      t.type = static_cast<TensorType>(type);
      if (t.shape[0] % traits->block_size != 0)
        at_info("row length " + std::to_string(t.shape[0]) + " is not a multiple of the " +
                std::string(traits->name) + " block size " + std::to_string(traits->block_size));
      // 8-byte element types can overflow here even though n_elements fits in an int64.
      if (mul_overflows(t.n_elements / traits->block_size, traits->type_size, &t.n_bytes))
        at_info("byte size overflows");
      t.offset = read_u64("tensor data offset");
      if (t.offset % out_.alignment_ != 0)
        at_info("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                std::to_string(out_.alignment_));
      out_.tensor_index_.emplace(t.name, out_.tensors_.size());
      out_.tensors_.push_back(std::move(t));
    }
  }

  void place_data() {
    uint64_t header_end = pos_;
    uint64_t data_offset = (header_end + out_.alignment_ - 1) / out_.alignment_ * out_.alignment_;
    out_.data_offset_ = data_offset;
    uint64_t file_size = bytes_.size();
    if (out_.tensors_.empty()) return;
    if (data_offset > file_size) {
      pos_ = file_size;
      fail("truncated file: the tensor data section starts past the end of the file");
    }
    uint64_t data_size = file_size - data_offset;
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(out_.tensors_.size());
    for (const TensorInfo& t : out_.tensors_) {
      uint64_t end;
      if (add_overflows(t.offset, t.n_bytes, &end) || end > data_size) {
        pos_ = file_size;
        fail("truncated file: tensor '" + t.name + "' (" + std::to_string(t.n_bytes) + " bytes at data offset " +
             std::to_string(t.offset) + ") runs past the end of the file; the data section has " +
             std::to_string(data_size) + " bytes");
      }
      by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo* prev = by_offset[i - 1];
      if (prev->n_bytes > 0 && by_offset[i]->offset < prev->offset + prev->n_bytes)
        throw ParseError("tensor '" + by_offset[i]->name + "' overlaps the data of tensor '" + prev->name + "'");
    }
  }

  std::span<const uint8_t> bytes_;
  File& out_;
  uint64_t pos_ = 0;
};

Result<File> File::parse(std::span<const uint8_t> bytes, std::string name) {
  File file;
  file.bytes_ = bytes;
  file.name_ = std::move(name);
  try {
    Parser(bytes, file).run();
  } catch (const ParseError& e) {
    return Error{ErrorCode::Corruption, file.name_ + ": " + e.what()};
  } catch (const std::bad_alloc&) {
    return Error{ErrorCode::ResourceExhausted, file.name_ + ": out of memory while reading metadata"};
  }
  return file;
}

Result<File> File::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  if (!mapping) return mapping.error();
  auto file = parse(mapping->bytes(), path);
  if (!file) return file.error();
  file->mapping_ = std::move(*mapping);  // the span stays valid: the mapping moved, not the pages
  return file;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> File::tensor_data(const TensorInfo& tensor) const {
  return bytes_.subspan(data_offset_ + tensor.offset, tensor.n_bytes);
}

}  // namespace omni::gguf
