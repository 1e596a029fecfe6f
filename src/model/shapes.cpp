#include "model/shapes.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <cstdio>
#include <numeric>
#include <utility>

namespace omni::model {
namespace {

Shape make(std::string name, std::string arch, std::string display, std::string basename, std::string size,
           uint32_t n_layer, uint32_t n_embd, uint32_t n_head, uint32_t n_head_kv, uint32_t n_ff, uint32_t n_vocab,
           uint32_t n_ctx, float rope_base, float eps) {
  Shape s;
  s.name = std::move(name);
  s.arch = std::move(arch);
  s.display_name = std::move(display);
  s.basename = std::move(basename);
  s.size_label = std::move(size);
  s.n_layer = n_layer;
  s.n_embd = n_embd;
  s.n_head = n_head;
  s.n_head_kv = n_head_kv;
  s.n_ff = n_ff;
  s.n_vocab = n_vocab;
  s.n_ctx = n_ctx;
  s.head_dim = n_embd / n_head;
  s.rope_freq_base = rope_base;
  s.rms_eps = eps;
  return s;
}

std::vector<Shape> build_table() {
  std::vector<Shape> t;
  // TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json.
  t.push_back(make("tinyllama-1.1b", "llama", "TinyLlama 1.1B", "TinyLlama", "1.1B", 22, 2048, 32, 4, 5632, 32000,
                   2048, 10000.0f, 1e-5f));
  // meta-llama/Llama-3.2-1B: head_dim 64 stated in config.json, tied embeddings, llama3 rope scaling.
  Shape l32 = make("llama-3.2-1b", "llama", "Llama 3.2 1B", "Llama-3.2", "1B", 16, 2048, 32, 8, 8192, 128256, 131072,
                   500000.0f, 1e-5f);
  l32.head_dim_in_config = true;
  l32.tied_embeddings = true;
  l32.llama3_rope = Llama3RopeScaling{32.0f, 1.0f, 4.0f, 8192};
  t.push_back(l32);
  // Qwen/Qwen2.5-0.5B: q/k/v biases, tied embeddings, 151936 embedding rows (tokenizer padded).
  Shape q = make("qwen2.5-0.5b", "qwen2", "Qwen2.5 0.5B", "Qwen2.5", "0.5B", 24, 896, 14, 2, 4864, 151936, 32768,
                 1000000.0f, 1e-6f);
  q.tied_embeddings = true;
  q.qkv_bias = true;
  t.push_back(q);
  // mistralai/Mistral-7B-v0.2 (32000 vocab, rope_theta 1e6, no sliding window): llama architecture.
  t.push_back(make("mistral-7b", "llama", "Mistral 7B v0.2", "Mistral", "7B", 32, 4096, 32, 8, 14336, 32000, 32768,
                   1000000.0f, 1e-5f));
  // meta-llama/Llama-2-13b-hf.
  t.push_back(make("llama-2-13b", "llama", "Llama 2 13B", "Llama-2", "13B", 40, 5120, 40, 40, 13824, 32000, 4096,
                   10000.0f, 1e-5f));
  // meta-llama/Meta-Llama-3-70B.
  t.push_back(make("llama-3-70b", "llama", "Meta Llama 3 70B", "Meta-Llama-3", "70B", 80, 8192, 64, 8, 28672, 128256,
                   8192, 500000.0f, 1e-5f));
  // Qwen/Qwen3-0.6B: head_dim 128 (not 1024 / 16), q/k RMS norms, tied embeddings.
  Shape q3 = make("qwen3-0.6b", "qwen3", "Qwen3 0.6B", "Qwen3", "0.6B", 28, 1024, 16, 8, 3072, 151936, 40960,
                  1000000.0f, 1e-6f);
  q3.head_dim = 128;
  q3.head_dim_in_config = true;
  q3.tied_embeddings = true;
  q3.qk_norm = true;
  q3.synth_embd_std = 0.08f;
  t.push_back(q3);
  // google/gemma-2b: multi-query attention (1 KV head), head_dim 256, tied embeddings.
  Shape g = make("gemma-2b", "gemma", "Gemma 2b", "gemma", "2B", 18, 2048, 8, 1, 16384, 256000, 8192, 10000.0f, 1e-6f);
  g.head_dim_in_config = true;
  g.tied_embeddings = true;
  g.synth_embd_std = 0.05f;
  t.push_back(g);
  // google/gemma-2-2b: head_dim 256 (not 2304 / 8), post-norms, soft-caps 50 / 30, sliding window
  // 4096 on even layers.
  Shape g2 = make("gemma2-2b", "gemma2", "Gemma 2 2b", "gemma-2", "2B", 26, 2304, 8, 4, 9216, 256000, 8192, 10000.0f,
                  1e-6f);
  g2.head_dim = 256;
  g2.head_dim_in_config = true;
  g2.tied_embeddings = true;
  g2.post_norms = true;
  g2.attn_softcap = 50.0f;
  g2.final_softcap = 30.0f;
  g2.sliding_window = 4096;
  g2.synth_embd_std = 0.01f;  // see gemma-tiny below: post-norms keep each block's addition near 1
  t.push_back(g2);

  // Test shapes (not real models): the same architectures at toy size, for reference tests that
  // synthesize their model. head_dim differs from n_embd / n_head where the real model's does.
  // Weights are N(0, 0.06) whatever the width, so narrow blocks add little to the residual stream.
  Shape q3t = make("qwen3-tiny", "qwen3", "Qwen3 tiny (test shape)", "Qwen3-tiny", "3M", 2, 256, 4, 2, 768, 4096, 4096,
                   1000000.0f, 1e-6f);
  q3t.head_dim = 128;
  q3t.head_dim_in_config = true;
  q3t.tied_embeddings = true;
  q3t.qk_norm = true;
  q3t.synth_embd_std = 0.15f;
  t.push_back(q3t);
  // The gemmas feed sqrt(n_embd) * embedding into the residual stream and read logits through the
  // same (tied) embeddings, so each token's own logit is about sqrt(n_embd) * (embedding share of
  // the stream) standard deviations above the rest: with random weights they need many blocks (and
  // gemma2, whose post-norms make each block add about 1, small embeddings) to keep the share low
  // and the next token undecided.
  Shape gt = make("gemma-tiny", "gemma", "Gemma tiny (test shape)", "gemma-tiny", "9M", 8, 256, 4, 1, 1024, 4096, 8192,
                  10000.0f, 1e-6f);
  gt.head_dim_in_config = true;
  gt.tied_embeddings = true;
  gt.synth_embd_std = 0.06f;
  t.push_back(gt);
  // A sliding window of 32, so that prompts of a hundred tokens exercise the window mask.
  Shape g2t = make("gemma2-tiny", "gemma2", "Gemma 2 tiny (test shape)", "gemma-2-tiny", "9M", 8, 256, 4, 2, 768, 4096,
                   8192, 10000.0f, 1e-6f);
  g2t.head_dim = 128;
  g2t.head_dim_in_config = true;
  g2t.tied_embeddings = true;
  g2t.post_norms = true;
  g2t.attn_softcap = 50.0f;
  g2t.final_softcap = 30.0f;
  g2t.sliding_window = 32;
  g2t.synth_embd_std = 0.05f;
  t.push_back(g2t);
  return t;
}

}  // namespace

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> table = build_table();
  return table;
}

const Shape* find_shape(std::string_view name) {
  for (const Shape& s : shapes())
    if (s.name == name) return &s;
  return nullptr;
}

namespace {

Error bad_spec(std::string_view spec, const std::string& why) {
  return Error{ErrorCode::InvalidArgument, "shape spec '" + std::string(spec) + "': " + why};
}

}  // namespace

Result<Shape> custom_shape(std::string_view spec) {
  constexpr std::string_view kPrefix = "custom:";
  if (spec.substr(0, kPrefix.size()) != kPrefix) return bad_spec(spec, "does not start with 'custom:'");
  std::map<std::string, std::string, std::less<>> kv;
  for (std::string_view rest = spec.substr(kPrefix.size()); !rest.empty();) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) return bad_spec(spec, "'" + std::string(item) + "' is not key=value");
    if (!kv.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1))).second)
      return bad_spec(spec, "key '" + std::string(item.substr(0, eq)) + "' given twice");
  }
  static const char* const kKeys[] = {"arch",  "layers", "embd", "heads",    "kv_heads", "head_dim",
                                      "ff",    "vocab",  "tied", "embd_std", "window",   "ctx", "rope_base"};
  for (const auto& entry : kv) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture one
    if (std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* k) { return key == k; }) == std::end(kKeys))
      return bad_spec(spec, "unknown key '" + key + "'");
  }

  // An integer key in [lo, hi]; `fallback` when absent (0: required).
  auto integer = [&](const char* key, uint32_t lo, uint32_t hi, uint32_t fallback) -> Result<uint32_t> {
    auto it = kv.find(key);
    if (it == kv.end()) {
      if (fallback) return fallback;
      return bad_spec(spec, std::string("'") + key + "' is required");
    }
    uint32_t v = 0;
    const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc{} || end != it->second.data() + it->second.size() || v < lo || v > hi)
      return bad_spec(spec, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], not '" + it->second + "'");
    return v;
  };
  auto real = [&](const char* key, float lo, float hi, float fallback) -> Result<float> {
    auto it = kv.find(key);
    if (it == kv.end()) return fallback;
    float v = 0;
    const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc{} || end != it->second.data() + it->second.size() || !(v >= lo && v <= hi))
      return bad_spec(spec, std::string("'") + key + "' must be a number in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], not '" + it->second + "'");
    return v;
  };

  const auto arch_it = kv.find("arch");
  if (arch_it == kv.end()) return bad_spec(spec, "'arch' is required");
  const std::string arch = arch_it->second;
  const Shape* tiny = nullptr;  // the architecture's table shape the custom one takes its traits from
  if (arch == "llama") tiny = find_shape("tinyllama-1.1b");
  else if (arch == "qwen2") tiny = find_shape("qwen2.5-0.5b");
  else if (arch == "qwen3") tiny = find_shape("qwen3-tiny");
  else if (arch == "gemma") tiny = find_shape("gemma-tiny");
  else if (arch == "gemma2") tiny = find_shape("gemma2-tiny");
  else return bad_spec(spec, "architecture '" + arch + "' cannot be synthesized (llama, qwen2, qwen3, gemma, gemma2)");

  auto layers = integer("layers", 1, 1000, 0);
  auto embd = integer("embd", 32, 65536, 0);
  auto heads = integer("heads", 1, 1024, 0);
  auto ff = integer("ff", 32, 262144, 0);
  auto vocab = integer("vocab", 260, 1u << 20, 0);
  if (!layers) return layers.error();
  if (!embd) return embd.error();
  if (!heads) return heads.error();
  if (!ff) return ff.error();
  if (!vocab) return vocab.error();
  auto kv_heads = integer("kv_heads", 1, *heads, *heads);
  auto head_dim = integer("head_dim", 2, 1024, std::max(*embd / *heads, 1u));
  auto tied = integer("tied", 0, 1, 2);
  auto window = integer("window", 1, 1u << 20, 32);
  auto ctx = integer("ctx", 16, 1u << 24, 4096);
  if (!kv_heads) return kv_heads.error();
  if (!head_dim) return head_dim.error();
  if (!tied) return tied.error();
  if (!window) return window.error();
  if (!ctx) return ctx.error();
  if (*heads % *kv_heads != 0)
    return bad_spec(spec, "heads (" + std::to_string(*heads) + ") must be a multiple of kv_heads (" +
                              std::to_string(*kv_heads) + ")");
  if (*head_dim % 2 != 0) return bad_spec(spec, "head_dim must be even (RoPE rotates pairs)");
  const bool gemma = arch == "gemma" || arch == "gemma2";
  const bool is_tied = *tied == 1 || (*tied == 2 && gemma);
  if (gemma && !is_tied) return bad_spec(spec, arch + " always ties its embeddings (tied=0 is not a " + arch + ")");

  // Tied heads read logits through token_embd: keep its spread graded as the tiny shapes do.
  const float default_std = arch == "gemma2" ? 0.05f : arch == "gemma" ? 0.06f : is_tied ? 0.1f : 0.3f;
  auto embd_std = real("embd_std", 1e-4f, 10.0f, default_std);
  auto rope_base = real("rope_base", 1.0f, 1e9f, tiny->rope_freq_base);
  if (!embd_std) return embd_std.error();
  if (!rope_base) return rope_base.error();

  Shape s = make(std::string(spec), arch, "Custom " + arch + " (test shape)", "custom-" + arch, "test", *layers, *embd,
                 *heads, *kv_heads, *ff, *vocab, *ctx, *rope_base, tiny->rms_eps);
  s.head_dim = *head_dim;
  s.head_dim_in_config = gemma || arch == "qwen3" || *head_dim != *embd / *heads || *embd % *heads != 0;
  s.tied_embeddings = is_tied;
  s.qkv_bias = tiny->qkv_bias;
  s.qk_norm = tiny->qk_norm;
  s.post_norms = tiny->post_norms;
  s.attn_softcap = tiny->attn_softcap;
  s.final_softcap = tiny->final_softcap;
  s.sliding_window = arch == "gemma2" ? *window : 0;
  s.synth_embd_std = *embd_std;
  return s;
}

Result<Shape> resolve_shape(std::string_view name_or_spec) {
  if (const Shape* s = find_shape(name_or_spec)) return *s;
  if (name_or_spec.substr(0, 7) == "custom:") return custom_shape(name_or_spec);
  std::string known;
  for (const Shape& sh : shapes()) known += (known.empty() ? "" : ", ") + sh.name;
  return Error{ErrorCode::NotFound, "unknown shape '" + std::string(name_or_spec) + "' (known: " + known +
                                        ", or a custom:arch=...,layers=... spec)"};
}

uint64_t TensorLayout::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::vector<TensorLayout> tensor_layout(const Shape& s, uint32_t n_layer, uint32_t n_vocab) {
  const uint64_t embd = s.n_embd, q_dim = uint64_t{s.n_head} * s.head_dim, kv_dim = uint64_t{s.n_head_kv} * s.head_dim;
  const uint64_t ff = s.n_ff;
  // (Hugging Face name, tensor): the converter emits tensors in the HF checkpoint's order, which
  // for a safetensors file is its names sorted as strings.
  std::vector<std::pair<std::string, TensorLayout>> hf;
  auto add = [&](std::string hf_name, std::string name, std::vector<uint64_t> shape, TensorRole role) {
    hf.emplace_back(std::move(hf_name), TensorLayout{std::move(name), std::move(shape), role});
  };
  add("model.embed_tokens.weight", "token_embd.weight", {embd, n_vocab}, TensorRole::TokenEmbedding);
  if (!s.tied_embeddings) add("lm_head.weight", "output.weight", {embd, n_vocab}, TensorRole::Output);
  add("model.norm.weight", "output_norm.weight", {embd}, TensorRole::Norm);
  for (uint32_t i = 0; i < n_layer; ++i) {
    const std::string hp = "model.layers." + std::to_string(i) + ".";
    const std::string bp = "blk." + std::to_string(i) + ".";
    add(hp + "input_layernorm.weight", bp + "attn_norm.weight", {embd}, TensorRole::Norm);
    if (s.qk_norm) {
      add(hp + "self_attn.q_norm.weight", bp + "attn_q_norm.weight", {s.head_dim}, TensorRole::Norm);
      add(hp + "self_attn.k_norm.weight", bp + "attn_k_norm.weight", {s.head_dim}, TensorRole::Norm);
    }
    add(hp + "self_attn.q_proj.weight", bp + "attn_q.weight", {embd, q_dim}, TensorRole::Weight);
    add(hp + "self_attn.k_proj.weight", bp + "attn_k.weight", {embd, kv_dim}, TensorRole::Weight);
    add(hp + "self_attn.v_proj.weight", bp + "attn_v.weight", {embd, kv_dim}, TensorRole::Weight);
    if (s.qkv_bias) {
      add(hp + "self_attn.q_proj.bias", bp + "attn_q.bias", {q_dim}, TensorRole::Bias);
      add(hp + "self_attn.k_proj.bias", bp + "attn_k.bias", {kv_dim}, TensorRole::Bias);
      add(hp + "self_attn.v_proj.bias", bp + "attn_v.bias", {kv_dim}, TensorRole::Bias);
    }
    add(hp + "self_attn.o_proj.weight", bp + "attn_output.weight", {q_dim, embd}, TensorRole::Weight);
    if (s.post_norms) {
      // Gemma 2 has four norms per block; its pre_feedforward_layernorm is the usual ffn_norm.
      add(hp + "post_attention_layernorm.weight", bp + "post_attention_norm.weight", {embd}, TensorRole::Norm);
      add(hp + "pre_feedforward_layernorm.weight", bp + "ffn_norm.weight", {embd}, TensorRole::Norm);
      add(hp + "post_feedforward_layernorm.weight", bp + "post_ffw_norm.weight", {embd}, TensorRole::Norm);
    } else {
      add(hp + "post_attention_layernorm.weight", bp + "ffn_norm.weight", {embd}, TensorRole::Norm);
    }
    add(hp + "mlp.gate_proj.weight", bp + "ffn_gate.weight", {embd, ff}, TensorRole::Weight);
    add(hp + "mlp.up_proj.weight", bp + "ffn_up.weight", {embd, ff}, TensorRole::Weight);
    add(hp + "mlp.down_proj.weight", bp + "ffn_down.weight", {ff, embd}, TensorRole::Weight);
  }
  std::sort(hf.begin(), hf.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::vector<TensorLayout> out;
  out.reserve(hf.size() + 1);
  // generate_extra_tensors() comes before the checkpoint's tensors.
  if (s.llama3_rope) out.push_back(TensorLayout{"rope_freqs.weight", {s.head_dim / 2}, TensorRole::RopeFreqs});
  for (auto& [hf_name, t] : hf) out.push_back(std::move(t));
  return out;
}

uint64_t parameter_count(const std::vector<TensorLayout>& layout) {
  uint64_t n = 0;
  for (const auto& t : layout) n += t.n_elements();
  return n;
}

std::vector<float> llama3_rope_factors(const Shape& s) {
  if (!s.llama3_rope) return {};
  const Llama3RopeScaling& r = *s.llama3_rope;
  // convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors), all in torch float32:
  //   freqs = 1.0 / (base ** (arange(0, dim, 2) / dim)); wavelen = 2 pi / freq
  //   wavelen < old_ctx / high_freq_factor -> 1;  wavelen > old_ctx / low_freq_factor -> factor
  //   otherwise smooth = (old_ctx / wavelen - low) / (high - low); 1 / ((1 - smooth) / factor + smooth)
  const float dim = static_cast<float>(s.head_dim);
  const float old_ctx = static_cast<float>(r.original_context_length);
  const float low_wavelen = old_ctx / r.low_freq_factor;
  const float high_wavelen = old_ctx / r.high_freq_factor;
  const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
  std::vector<float> out;
  for (uint32_t i = 0; i < s.head_dim; i += 2) {
    // base^(i/dim) in double, rounded once: the correctly rounded float power, on every libm.
    const float power = static_cast<float>(std::pow(static_cast<double>(s.rope_freq_base),
                                                    static_cast<double>(static_cast<float>(i) / dim)));
    const float freq = 1.0f / power;
    const float wavelen = two_pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(r.factor);
    } else {
      const float smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      out.push_back(1.0f / ((1.0f - smooth) / r.factor + smooth));
    }
  }
  return out;
}

std::optional<uint32_t> file_type_of(gguf::TensorType type) {
  using T = gguf::TensorType;
  switch (type) {  // enum llama_ftype
    case T::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case T::F16: return 1;   // LLAMA_FTYPE_MOSTLY_F16
    case T::Q4_0: return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    case T::Q4_1: return 3;  // LLAMA_FTYPE_MOSTLY_Q4_1
    case T::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case T::Q5_0: return 8;  // LLAMA_FTYPE_MOSTLY_Q5_0
    case T::Q5_1: return 9;  // LLAMA_FTYPE_MOSTLY_Q5_1
    case T::BF16: return 32;  // LLAMA_FTYPE_MOSTLY_BF16
    default: return std::nullopt;
  }
}

void add_hparams(gguf::Metadata& md, const Shape& s, uint32_t n_layer, uint32_t n_vocab, uint32_t file_type) {
  using gguf::Value;
  const std::string a = s.arch + ".";
  if (s.arch == "gemma" || s.arch == "gemma2") {
    // GemmaModel / Gemma2Model.set_gguf_parameters(): their own order, no rope.freq_base.
    md.set(a + "context_length", Value::u32(s.n_ctx));
    md.set(a + "embedding_length", Value::u32(s.n_embd));
    md.set(a + "block_count", Value::u32(n_layer));
    md.set(a + "feed_forward_length", Value::u32(s.n_ff));
    md.set(a + "attention.head_count", Value::u32(s.n_head));
    md.set(a + "attention.head_count_kv", Value::u32(s.n_head_kv));
    md.set(a + "attention.layer_norm_rms_epsilon", Value::f32(s.rms_eps));
    md.set(a + "attention.key_length", Value::u32(s.head_dim));
    md.set(a + "attention.value_length", Value::u32(s.head_dim));
    md.set("general.file_type", Value::u32(file_type));
    if (s.arch == "gemma2") {
      md.set(a + "attn_logit_softcapping", Value::f32(s.attn_softcap));
      md.set(a + "final_logit_softcapping", Value::f32(s.final_softcap));
      md.set(a + "attention.sliding_window", Value::u32(s.sliding_window));
    }
    return;
  }
  // TextModel.set_gguf_parameters()
  md.set(a + "block_count", Value::u32(n_layer));
  md.set(a + "context_length", Value::u32(s.n_ctx));
  md.set(a + "embedding_length", Value::u32(s.n_embd));
  md.set(a + "feed_forward_length", Value::u32(s.n_ff));
  md.set(a + "attention.head_count", Value::u32(s.n_head));
  md.set(a + "attention.head_count_kv", Value::u32(s.n_head_kv));
  md.set(a + "rope.freq_base", Value::f32(s.rope_freq_base));
  md.set(a + "attention.layer_norm_rms_epsilon", Value::f32(s.rms_eps));
  if (s.head_dim_in_config) {
    md.set(a + "attention.key_length", Value::u32(s.head_dim));
    md.set(a + "attention.value_length", Value::u32(s.head_dim));
  }
  md.set("general.file_type", Value::u32(file_type));
  // LlamaModel.set_gguf_parameters() adds these after the base class's keys.
  if (s.arch == "llama") {
    md.set(a + "vocab_size", Value::u32(n_vocab));
    md.set(a + "rope.dimension_count", Value::u32(s.head_dim));
  }
}

namespace {

struct MixName {
  const char* name;
  Mix mix;
};
constexpr MixName kMixNames[] = {
    {"f32", Mix::F32},       {"f16", Mix::F16},       {"bf16", Mix::BF16},     {"q8_0", Mix::Q8_0},
    {"q4_0", Mix::Q4_0},     {"q4_1", Mix::Q4_1},     {"q5_0", Mix::Q5_0},     {"q5_1", Mix::Q5_1},
    {"q2_k", Mix::Q2_K},     {"q3_k_s", Mix::Q3_K_S}, {"q3_k_m", Mix::Q3_K_M}, {"q3_k_l", Mix::Q3_K_L},
    {"q4_k_s", Mix::Q4_K_S}, {"q4_k_m", Mix::Q4_K_M}, {"q5_k_s", Mix::Q5_K_S}, {"q5_k_m", Mix::Q5_K_M},
    {"q6_k", Mix::Q6_K},
};

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third in between.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

int block_number(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

uint64_t block_size(gguf::TensorType t) { return gguf::tensor_type_traits(t)->block_size; }

}  // namespace

std::optional<Mix> mix_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "q3_k") return Mix::Q3_K_M;  // llama-quantize's aliases
  if (lower == "q4_k") return Mix::Q4_K_M;
  if (lower == "q5_k") return Mix::Q5_K_M;
  for (const auto& m : kMixNames)
    if (lower == m.name) return m.mix;
  return std::nullopt;
}

std::string mix_name(Mix mix) {
  for (const auto& m : kMixNames)
    if (m.mix == mix) return m.name;
  return "ftype " + std::to_string(static_cast<uint32_t>(mix));
}

std::string mix_names_text() {
  std::string s;
  for (const auto& m : kMixNames) s += (s.empty() ? "" : ", ") + std::string(m.name);
  return s;
}

gguf::TensorType mix_base_type(Mix mix) {
  using T = gguf::TensorType;
  switch (mix) {
    case Mix::F32: return T::F32;
    case Mix::F16: return T::F16;
    case Mix::BF16: return T::BF16;
    case Mix::Q4_0: return T::Q4_0;
    case Mix::Q4_1: return T::Q4_1;
    case Mix::Q8_0: return T::Q8_0;
    case Mix::Q5_0: return T::Q5_0;
    case Mix::Q5_1: return T::Q5_1;
    case Mix::Q2_K: return T::Q2_K;
    case Mix::Q3_K_S:
    case Mix::Q3_K_M:
    case Mix::Q3_K_L: return T::Q3_K;
    case Mix::Q4_K_S:
    case Mix::Q4_K_M: return T::Q4_K;
    case Mix::Q5_K_S:
    case Mix::Q5_K_M: return T::Q5_K;
    case Mix::Q6_K: return T::Q6_K;
  }
  return T::F16;
}

std::optional<Mix> mix_of(gguf::TensorType type) {
  using T = gguf::TensorType;
  switch (type) {
    case T::F32: return Mix::F32;
    case T::F16: return Mix::F16;
    case T::BF16: return Mix::BF16;
    case T::Q8_0: return Mix::Q8_0;
    case T::Q4_0: return Mix::Q4_0;
    case T::Q4_1: return Mix::Q4_1;
    case T::Q5_0: return Mix::Q5_0;
    case T::Q5_1: return Mix::Q5_1;
    case T::Q2_K: return Mix::Q2_K;
    case T::Q6_K: return Mix::Q6_K;
    default: return std::nullopt;
  }
}

std::vector<MixChoice> mix_tensor_types(Mix ftype, const MixModel& model, const std::vector<MixTensor>& tensors) {
  using T = gguf::TensorType;
  const T base = mix_base_type(ftype);
  std::vector<MixChoice> out(tensors.size(), MixChoice{base, false});
  if (base == T::F32 || base == T::F16 || base == T::BF16) return out;  // not "quantized": no per-tensor rules

  // llama-quantize visits tensors ordered by block number (non-block tensors first), then name.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::vector<int> blocks(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) blocks[i] = block_number(tensors[i].name);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (blocks[a] != blocks[b]) return blocks[a] < blocks[b];
    return tensors[a].name < tensors[b].name;
  });

  int n_attention_wv = 0;
  bool has_output = false;
  for (const auto& t : tensors) {
    if (contains(t.name, "attn_v.weight") || contains(t.name, "attn_qkv.weight") || contains(t.name, "attn_kv_b.weight"))
      ++n_attention_wv;
    else if (t.name == "output.weight")
      has_output = true;
  }
  const int n_layer = static_cast<int>(model.n_layer);
  const uint32_t n_head_kv = model.n_head_kv ? model.n_head_kv : model.n_head;
  const uint32_t n_gqa = n_head_kv ? model.n_head / n_head_kv : 1;
  const bool falcon = model.arch == "falcon";
  const bool is_70b = model.arch == "llama" && model.n_layer == 80 && model.n_head != n_head_kv;
  const bool moe8 = model.n_expert == 8;
  int i_attention_wv = 0, i_ffn_down = 0;
  auto layer_of = [&](int counter, const std::string& name) {
    return model.n_expert > 1 ? block_number(name) : counter;  // experts: the block number in the name
  };

  for (size_t index : order) {
    const std::string& name = tensors[index].name;
    const uint64_t ne0 = tensors[index].ne0;
    T t = base;
    if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
      if (falcon || ne0 % block_size(t) != 0) t = T::Q8_0;
      else if (t != T::Q8_0) t = T::Q6_K;
    } else if (name == "token_embd.weight") {
      // Only the IQ and TQ mixes change the embeddings.
    } else if (contains(name, "attn_v.weight")) {
      if (ftype == Mix::Q2_K) t = n_gqa >= 4 ? T::Q4_K : T::Q3_K;
      else if (ftype == Mix::Q3_K_M) t = i_attention_wv < 2 ? T::Q5_K : T::Q4_K;
      else if (ftype == Mix::Q3_K_L) t = T::Q5_K;
      else if ((ftype == Mix::Q4_K_M || ftype == Mix::Q5_K_M) && use_more_bits(i_attention_wv, n_attention_wv))
        t = T::Q6_K;
      else if (ftype == Mix::Q4_K_S && i_attention_wv < 4) t = T::Q5_K;
      if (is_70b && (t == T::Q3_K || t == T::Q4_K)) t = T::Q5_K;
      if (moe8) t = T::Q8_0;
      ++i_attention_wv;
    } else if (contains(name, "attn_k.weight")) {
      if (moe8) t = T::Q8_0;
    } else if (contains(name, "attn_q.weight")) {
      // Only the IQ mixes.
    } else if (contains(name, "ffn_down")) {
      const int i_layer = layer_of(i_ffn_down, name);
      if (ftype == Mix::Q2_K) {
        t = T::Q3_K;
      } else if (ftype == Mix::Q3_K_M) {
        t = i_layer < n_layer / 16                        ? T::Q5_K
            : !falcon || use_more_bits(i_layer, n_layer) ? T::Q4_K
                                                          : T::Q3_K;
      } else if (ftype == Mix::Q3_K_L) {
        t = falcon ? T::Q4_K : T::Q5_K;
      } else if (ftype == Mix::Q4_K_M) {
        if (falcon)
          t = i_layer < n_layer / 16 ? T::Q6_K : use_more_bits(i_layer, n_layer) ? T::Q5_K : T::Q4_K;
        else if (use_more_bits(i_layer, n_layer))
          t = T::Q6_K;
      } else if (ftype == Mix::Q5_K_M && use_more_bits(i_layer, n_layer)) {
        t = T::Q6_K;
      } else if (ftype == Mix::Q4_K_S && !falcon && i_layer < n_layer / 8) {
        t = T::Q5_K;
      }
      ++i_ffn_down;
    } else if (contains(name, "attn_output.weight")) {
      if (!falcon) {
        if (moe8) {
          if (ftype == Mix::Q2_K || ftype == Mix::Q3_K_S || ftype == Mix::Q3_K_M || ftype == Mix::Q4_K_S ||
              ftype == Mix::Q4_K_M)
            t = T::Q5_K;
        } else {
          if (ftype == Mix::Q2_K) t = T::Q3_K;
          else if (ftype == Mix::Q3_K_M) t = T::Q4_K;
          else if (ftype == Mix::Q3_K_L) t = T::Q5_K;
        }
      } else if (ftype == Mix::Q3_K_L) {
        t = T::Q4_K;
      }
    } else if (contains(name, "attn_qkv.weight")) {
      if (ftype == Mix::Q3_K_M || ftype == Mix::Q3_K_L) t = T::Q4_K;
      else if (ftype == Mix::Q4_K_M) t = T::Q5_K;
      else if (ftype == Mix::Q5_K_M) t = T::Q6_K;
    }

    MixChoice& choice = out[index];
    if (ne0 % block_size(t) != 0) {  // llama.cpp's convert_incompatible_tensor
      choice.fallback = true;
      switch (t) {
        case T::Q2_K:
        case T::Q3_K: t = T::Q4_0; break;  // llama.cpp: IQ4_NL
        case T::Q4_K: t = T::Q5_0; break;
        case T::Q5_K: t = T::Q5_1; break;
        case T::Q6_K: t = T::Q8_0; break;
        default: t = T::F16; break;
      }
      if (ne0 % block_size(t) != 0) t = T::F16;
    }
    choice.type = t;
  }
  return out;
}

}  // namespace omni::model
