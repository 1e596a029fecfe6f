// make_fuzz_seeds OUT_DIR FILE...: writes a small valid GGUF for each input, keeping its metadata
// keys, value types and tensor table but capping arrays at 8 items and tensors at one block, so
// the fuzzer starts from real structure at a size it can mutate quickly.
#include <cstdio>
#include <filesystem>

#include "gguf/reader.h"
#include "gguf/writer.h"

using namespace omni::gguf;

namespace {

Array shrink(const Array& a) {
  constexpr size_t kMax = 8;
  Array out;
  out.elem_type = a.elem_type;
  if (a.elem_type == ValueType::STRING) {
    out.strings.assign(a.strings.begin(), a.strings.begin() + static_cast<std::ptrdiff_t>(std::min(kMax, a.strings.size())));
  } else if (a.elem_type == ValueType::ARRAY) {
    for (size_t i = 0; i < std::min(kMax, a.arrays.size()); ++i) out.arrays.push_back(shrink(a.arrays[i]));
  } else {
    size_t width = *value_type_size(static_cast<uint32_t>(a.elem_type));
    out.raw.assign(a.raw.begin(), a.raw.begin() + static_cast<std::ptrdiff_t>(std::min(kMax * width, a.raw.size())));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: make_fuzz_seeds OUT_DIR FILE...\n");
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  int written = 0;
  for (int i = 2; i < argc; ++i) {
    auto file = File::open(argv[i]);
    if (!file) {
      std::fprintf(stderr, "%s\n", file.error().message.c_str());
      return 1;
    }
    Writer w(file->version());
    for (const auto& e : file->metadata().entries())
      w.metadata().set(e.key, e.value.as_array() ? Value::array(shrink(*e.value.as_array())) : e.value);
    for (size_t t = 0; t < std::min<size_t>(file->tensors().size(), 6); ++t) {
      const TensorInfo& info = file->tensors()[t];
      auto r = w.add_tensor({info.name, info.type, {tensor_type_traits(info.type)->block_size}});
      if (!r) return 1;
    }
    std::string out = std::string(argv[1]) + "/" + std::filesystem::path(argv[i]).stem().string() + ".seed";
    auto r = w.write_file(out, [&](size_t index, TensorSink& sink) {
      const TensorInfo& info = file->tensors()[index];
      return sink.write(file->tensor_data(info).first(w.tensors()[index].n_bytes));
    });
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().message.c_str());
      return 1;
    }
    ++written;
  }
  std::printf("wrote %d seeds to %s\n", written, argv[1]);
  return 0;
}
