#include "model/quantize_model.h"

#include <vector>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "kernels/quantize.h"
#include "model/shapes.h"

namespace omni::model {
namespace {

using gguf::TensorType;

bool is_matrix(const gguf::TensorInfo& t) {
  return t.shape.size() >= 2 && t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".weight") == 0;
}

bool is_float_source(TensorType t) { return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16; }

}  // namespace

Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, TensorType target) {
  const auto file_type = file_type_of(target);
  if (!kernels::can_quantize(target) || !file_type)
    return Error{"cannot quantize to " + gguf::tensor_type_name(target) +
                 " (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)"};
  auto in = gguf::File::open(input);
  if (!in) return in.error();

  gguf::Writer writer(in->version());
  for (const auto& e : in->metadata().entries()) writer.metadata().set(e.key, e.value);
  writer.metadata().set("general.file_type", gguf::Value::u32(*file_type));
  writer.metadata().set("general.quantization_version", gguf::Value::u32(2));

  QuantizeReport report;
  std::vector<TensorType> out_types;
  for (const gguf::TensorInfo& t : in->tensors()) {
    TensorType out = t.type;
    if (is_matrix(t)) {
      if (!is_float_source(t.type))
        return Error{input + ": tensor '" + t.name + "' is already " + gguf::tensor_type_name(t.type) +
                     "; quantize from an F32, F16 or BF16 model"};
      out = target;
      if (t.shape[0] % gguf::tensor_type_traits(target)->block_size != 0) {
        out = TensorType::F16;
        ++report.fallbacks;
      } else {
        ++report.converted;
      }
    }
    auto added = writer.add_tensor({t.name, out, t.shape});
    if (!added) return Error{output + ": " + added.error().message};
    out_types.push_back(out);
    report.input_bytes += t.n_bytes;
    report.output_bytes += writer.tensors().back().n_bytes;
  }
  report.tensors = in->tensors().size();

  const gguf::File& src = *in;
  auto source = [&](size_t index, gguf::TensorSink& sink) -> Result<void> {
    const gguf::TensorInfo& t = src.tensors()[index];
    const TensorType out = out_types[index];
    auto data = src.tensor_data(t);
    if (out == t.type) return sink.write(data);
    const int64_t row = static_cast<int64_t>(t.shape[0]);
    const uint64_t in_row = *gguf::row_bytes(t.type, row), out_row = *gguf::row_bytes(out, row);
    std::vector<float> values(row);
    std::vector<uint8_t> bytes(out_row);
    for (uint64_t r = 0; r < t.rows(); ++r) {
      kernels::dequantize_row(t.type, data.data() + r * in_row, values.data(), row);
      kernels::quantize_row(out, values.data(), bytes.data(), row);
      if (auto w = sink.write(bytes); !w) return w;
    }
    return {};
  };
  if (auto r = writer.write_file(output, source); !r) return r.error();
  return report;
}

}  // namespace omni::model
