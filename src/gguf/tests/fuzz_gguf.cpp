// libFuzzer target: any byte string must parse to a File or an Error, never crash or hang, and
// every tensor view a successful parse hands out must lie inside the input.
#include <cstdint>
#include <cstdlib>

#include "gguf/reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = omni::gguf::File::parse({data, size}, "fuzz-input");
  if (!file) return 0;
  for (const auto& t : file->tensors()) {
    auto bytes = file->tensor_data(t);
    if (bytes.size() != t.n_bytes || bytes.data() < data || bytes.data() + bytes.size() > data + size) std::abort();
  }
  for (const auto& e : file->metadata().entries()) (void)e.value.to_display(4);
  return 0;
}
