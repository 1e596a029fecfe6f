#include "model/config.h"

#include <cmath>

namespace omni::model {
namespace {

struct ArchInfo {
  const char* name;
  Architecture arch;
  RopeStyle rope;
};

constexpr ArchInfo kArchitectures[] = {
    {"llama", Architecture::Llama, RopeStyle::Adjacent},
    {"qwen2", Architecture::Qwen2, RopeStyle::Halves},
    {"qwen3", Architecture::Qwen3, RopeStyle::Halves},
    {"phi3", Architecture::Phi3, RopeStyle::Halves},
    {"gemma", Architecture::Gemma, RopeStyle::Halves},
    {"gemma2", Architecture::Gemma2, RopeStyle::Halves},
};

}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& a : kArchitectures) out.emplace_back(a.name);
  return out;
}

Result<ModelConfig> ModelConfig::from_metadata(const gguf::Metadata& md) {
  auto arch_name = md.get_string("general.architecture");
  if (!arch_name) return arch_name.error();
  const ArchInfo* info = nullptr;
  for (const auto& a : kArchitectures)
    if (*arch_name == a.name) info = &a;
  if (!info) {
    std::string list;
    for (const auto& a : kArchitectures) list += std::string(list.empty() ? "" : ", ") + a.name;
    return Error{ErrorCode::InvalidArgument, "unsupported architecture '" + *arch_name + "' (supported: " + list + ")"};
  }

  ModelConfig c;
  c.arch = info->arch;
  c.arch_name = *arch_name;
  c.rope_style = info->rope;
  const std::string p = *arch_name + ".";
  auto need_u32 = [&](const std::string& key, uint32_t& out) -> Result<void> {
    auto v = md.get_uint(p + key);
    if (!v) return v.error();
    if (*v == 0 || *v > (1u << 30))
      return Error{ErrorCode::Corruption,
                   "metadata key '" + p + key + "' has an implausible value " + std::to_string(*v)};
    out = static_cast<uint32_t>(*v);
    return {};
  };
  auto opt_u32 = [&](const std::string& key, uint32_t& out) -> Result<void> {
    if (!md.contains(p + key)) return {};
    return need_u32(key, out);
  };
  for (auto [key, field] : {std::pair{"embedding_length", &c.n_embd}, {"block_count", &c.n_layer},
                            {"feed_forward_length", &c.n_ff}, {"attention.head_count", &c.n_head}})
    if (auto r = need_u32(key, *field); !r) return r.error();
  c.n_head_kv = c.n_head;
  if (auto r = opt_u32("attention.head_count_kv", c.n_head_kv); !r) return r.error();
  c.head_dim = c.n_embd / c.n_head;
  if (auto r = opt_u32("attention.key_length", c.head_dim); !r) return r.error();
  uint32_t value_length = c.head_dim;
  if (auto r = opt_u32("attention.value_length", value_length); !r) return r.error();
  if (value_length != c.head_dim)
    return Error{ErrorCode::InvalidArgument, "attention.value_length " + std::to_string(value_length) +
                                                 " differs from key_length " + std::to_string(c.head_dim) +
                                                 ": not supported"};
  c.rope_dims = c.head_dim;
  if (auto r = opt_u32("rope.dimension_count", c.rope_dims); !r) return r.error();
  c.n_ctx_train = 4096;
  if (auto r = opt_u32("context_length", c.n_ctx_train); !r) return r.error();

  if (c.n_head % c.n_head_kv != 0)
    return Error{ErrorCode::Corruption, "attention.head_count " + std::to_string(c.n_head) +
                                            " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv)};
  if (c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
    return Error{ErrorCode::Corruption, "rope.dimension_count " + std::to_string(c.rope_dims) +
                                            " does not fit a head of " + std::to_string(c.head_dim)};

  if (md.contains(p + "attention.layer_norm_rms_epsilon")) {
    auto eps = md.get_float(p + "attention.layer_norm_rms_epsilon");
    if (!eps) return eps.error();
    c.rms_eps = static_cast<float>(*eps);
  }
  if (md.contains(p + "rope.freq_base")) {
    auto base = md.get_float(p + "rope.freq_base");
    if (!base) return base.error();
    c.rope_base = static_cast<float>(*base);
  }
  if (md.contains(p + "rope.scaling.type")) {
    auto type = md.get_string(p + "rope.scaling.type");
    if (!type) return type.error();
    if (*type == "linear") {
      auto factor = md.get_float(p + "rope.scaling.factor");
      if (!factor) return factor.error();
      if (*factor <= 0) return Error{ErrorCode::Corruption, "rope.scaling.factor must be positive"};
      c.rope_freq_scale = static_cast<float>(1.0 / *factor);
    } else if (*type != "none") {
      return Error{
          ErrorCode::InvalidArgument,
          "rope scaling type '" + *type + "' is not supported (supported: none, linear, llama3 via rope_freqs)"};
    }
  }
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.scale_query = c.arch == Architecture::Phi3 || c.arch == Architecture::Gemma || c.arch == Architecture::Gemma2;
  if (c.arch == Architecture::Gemma || c.arch == Architecture::Gemma2) {
    c.activation = FfnActivation::GeluGated;
    c.scale_embeddings = true;  // its GGUF norm weights already include gemma's +1 offset
  }
  if (c.arch == Architecture::Gemma2) {
    auto need_positive = [&](const std::string& key, float& out) -> Result<void> {
      auto v = md.get_float(p + key);
      if (!v) return v.error();
      if (!(*v > 0) || !std::isfinite(*v))
        return Error{ErrorCode::Corruption,
                     "metadata key '" + p + key + "' must be a positive number, not " + std::to_string(*v)};
      out = static_cast<float>(*v);
      return {};
    };
    if (auto r = need_positive("attn_logit_softcapping", c.attn_softcap); !r) return r.error();
    if (auto r = need_positive("final_logit_softcapping", c.final_softcap); !r) return r.error();
    if (auto r = need_u32("attention.sliding_window", c.sliding_window); !r) return r.error();
    // Even layers slide, odd layers attend globally, unless the file says otherwise.
    c.swa_period = 2;
    if (const gguf::Value* v = md.find(p + "attention.sliding_window_pattern"); v && v->as_array())
      return Error{ErrorCode::InvalidArgument,
                   "metadata key '" + p + "attention.sliding_window_pattern' is a per-layer array: not supported"};
    if (md.contains(p + "attention.sliding_window_pattern")) {
      auto period = md.get_uint(p + "attention.sliding_window_pattern");
      if (!period) return period.error();
      if (*period > c.n_layer)
        return Error{ErrorCode::Corruption, "metadata key '" + p +
                                                "attention.sliding_window_pattern' has an implausible value " +
                                                std::to_string(*period)};
      c.swa_period = static_cast<uint32_t>(*period);  // 0: every layer slides
    }
    c.post_norms = true;
    // Gemma 2 scales queries by query_pre_attn_scalar^-1/2, which GGUF does not carry: it is
    // head_dim for the 2B and 9B models and n_embd / n_head for the 27B one, which llama.cpp
    // recognizes by its 46 layers. We do the same, so that a real 27B file gives its outputs.
    if (c.n_layer == 46) c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head));
  }
  c.rope_base_swa = c.rope_base;
  if (c.sliding_window != 0 && md.contains(p + "rope.freq_base_swa")) {
    auto base = md.get_float(p + "rope.freq_base_swa");
    if (!base) return base.error();
    c.rope_base_swa = static_cast<float>(*base);
  }
  return c;
}

}  // namespace omni::model
