#include "model/quantize_model.h"

#include <string_view>
#include <vector>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "kernels/quantize.h"
#include "model/shapes.h"

namespace omni::model {
namespace {

using gguf::TensorType;

bool ends_with(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The tensors llama-quantize quantizes: 2+ dimensional *.weight, not norms.
bool is_matrix(const gguf::TensorInfo& t) {
  return t.shape.size() >= 2 && ends_with(t.name, ".weight") && !ends_with(t.name, "_norm.weight");
}

uint32_t uint_or(const gguf::Metadata& md, const std::string& key, uint32_t fallback) {
  auto v = md.get_uint(key);
  return v ? static_cast<uint32_t>(*v) : fallback;
}

bool is_float_source(TensorType t) { return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16; }

}  // namespace

Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, TensorType target) {
  const auto mix = mix_of(target);
  if (!mix)
    return Error{ErrorCode::InvalidArgument,
                 "cannot quantize to " + gguf::tensor_type_name(target) + " (supported: " + mix_names_text() + ")"};
  return quantize_model(input, output, *mix);
}

Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, Mix mix) {
  auto in = gguf::File::open(input);
  if (!in) return in.error();
  const gguf::Metadata& md = in->metadata();

  MixModel model;
  if (auto arch = md.get_string("general.architecture")) model.arch = *arch;
  model.n_layer = uint_or(md, model.arch + ".block_count", 0);
  model.n_head = uint_or(md, model.arch + ".attention.head_count", 0);
  model.n_head_kv = uint_or(md, model.arch + ".attention.head_count_kv", model.n_head);
  model.n_expert = uint_or(md, model.arch + ".expert_count", 0);

  std::vector<MixTensor> matrices;
  for (const gguf::TensorInfo& t : in->tensors()) {
    if (!is_matrix(t)) continue;
    if (!is_float_source(t.type))
      return Error{ErrorCode::InvalidArgument, input + ": tensor '" + t.name + "' is already " +
                                                   gguf::tensor_type_name(t.type) +
                                                   "; quantize from an F32, F16 or BF16 model"};
    matrices.push_back({t.name, t.shape[0]});
  }
  const std::vector<MixChoice> choices = mix_tensor_types(mix, model, matrices);

  gguf::Writer writer(in->version());
  for (const auto& e : md.entries()) writer.metadata().set(e.key, e.value);
  writer.metadata().set("general.file_type", gguf::Value::u32(file_type_of(mix)));
  writer.metadata().set("general.quantization_version", gguf::Value::u32(2));

  QuantizeReport report;
  std::vector<TensorType> out_types;
  size_t next_matrix = 0;
  for (const gguf::TensorInfo& t : in->tensors()) {
    TensorType out = t.type;
    if (is_matrix(t)) {
      const MixChoice& c = choices[next_matrix++];
      out = c.type;
      ++(c.fallback ? report.fallbacks : report.converted);
    }
    auto added = writer.add_tensor({t.name, out, t.shape});
    if (!added) return added.error().with_context(output);
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
