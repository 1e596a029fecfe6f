// Tests of the shape table and `synthesize`.
//
// Expected values come from outside the code under test: model hyper-parameters typed in from the
// models' config.json files, sizes computed here from those numbers and ggml's block sizes, the
// GGUF header size computed here from the format's encoding rules, statistics of the weights
// measured on the written file, and the shared vocabulary file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "kernels/quantize.h"
#include "model/shapes.h"
#include "model/synth.h"
#include "model/tokenizer.h"

namespace omni::model {
namespace {

namespace fs = std::filesystem;
using gguf::TensorType;

// ------------------------------------------------------------------------------------------------
// The shape table

struct Expected {
  const char* name;
  const char* arch;
  uint32_t layers, embd, heads, kv_heads, head_dim, ffn, vocab, ctx;
  double rope, eps;
  bool tied, bias, llama3;
  size_t tensors;     // 9 per block (+3 biases, +2 q/k norms, +2 post-norms), token_embd, output_norm,
                      // [output], [rope_freqs]
  double params_b;    // published parameter counts, in billions
};

// From the models' config.json (TinyLlama-1.1B-Chat-v1.0, Llama-3.2-1B, Qwen2.5-0.5B,
// Mistral-7B-v0.2, Llama-2-13b-hf, Meta-Llama-3-70B, Qwen3-0.6B, gemma-2b, gemma-2-2b; the
// published sizes of the last three: 0.6B of which 0.44B without embeddings, 2.51B, 2.61B), and
// the test shapes as specified in shapes.cpp (sizes summed by hand: embeddings 4096 x 256, per
// block q/k/v/o and gate/up/down).
const Expected kExpected[] = {
    {"tinyllama-1.1b", "llama", 22, 2048, 32, 4, 64, 5632, 32000, 2048, 10000, 1e-5, false, false, false, 201, 1.100},
    {"llama-3.2-1b", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 131072, 500000, 1e-5, true, false, true, 147, 1.236},
    {"qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 32768, 1e6, 1e-6, true, true, false, 290, 0.494},
    {"mistral-7b", "llama", 32, 4096, 32, 8, 128, 14336, 32000, 32768, 1e6, 1e-5, false, false, false, 291, 7.242},
    {"llama-2-13b", "llama", 40, 5120, 40, 40, 128, 13824, 32000, 4096, 10000, 1e-5, false, false, false, 363, 13.016},
    {"llama-3-70b", "llama", 80, 8192, 64, 8, 128, 28672, 128256, 8192, 500000, 1e-5, false, false, false, 723, 70.554},
    {"qwen3-0.6b", "qwen3", 28, 1024, 16, 8, 128, 3072, 151936, 40960, 1e6, 1e-6, true, false, false, 310, 0.596},
    {"gemma-2b", "gemma", 18, 2048, 8, 1, 256, 16384, 256000, 8192, 10000, 1e-6, true, false, false, 164, 2.506},
    {"gemma2-2b", "gemma2", 26, 2304, 8, 4, 256, 9216, 256000, 8192, 10000, 1e-6, true, false, false, 288, 2.614},
    // Test shapes, counted with their norms: qwen3-tiny 1048576 + 2 x (393216 + 589824 + 768) + 256.
    {"qwen3-tiny", "qwen3", 2, 256, 4, 2, 128, 768, 4096, 4096, 1e6, 1e-6, true, false, false, 24, 0.0030164},
    {"gemma-tiny", "gemma", 8, 256, 4, 1, 64, 1024, 4096, 8192, 10000, 1e-6, true, false, false, 74, 0.0086551},
    {"gemma2-tiny", "gemma2", 8, 256, 4, 2, 128, 768, 4096, 8192, 10000, 1e-6, true, false, false, 90, 0.0089213},
};

TEST(SynthShapes, TableMatchesTheRealConfigs) {
  ASSERT_EQ(shapes().size(), std::size(kExpected));
  for (const Expected& e : kExpected) {
    const Shape* s = find_shape(e.name);
    ASSERT_NE(s, nullptr) << e.name;
    EXPECT_EQ(s->arch, e.arch) << e.name;
    EXPECT_EQ(s->n_layer, e.layers) << e.name;
    EXPECT_EQ(s->n_embd, e.embd) << e.name;
    EXPECT_EQ(s->n_head, e.heads) << e.name;
    EXPECT_EQ(s->n_head_kv, e.kv_heads) << e.name;
    EXPECT_EQ(s->n_ff, e.ffn) << e.name;
    EXPECT_EQ(s->n_vocab, e.vocab) << e.name;
    EXPECT_EQ(s->n_ctx, e.ctx) << e.name;
    EXPECT_EQ(s->head_dim, e.head_dim) << e.name;
    EXPECT_EQ(s->rope_freq_base, static_cast<float>(e.rope)) << e.name;
    EXPECT_EQ(s->rms_eps, static_cast<float>(e.eps)) << e.name;
    EXPECT_EQ(s->tied_embeddings, e.tied) << e.name;
    EXPECT_EQ(s->qkv_bias, e.bias) << e.name;
    EXPECT_EQ(s->llama3_rope.has_value(), e.llama3) << e.name;
    const auto layout = tensor_layout(*s);
    EXPECT_EQ(layout.size(), e.tensors) << e.name;
    EXPECT_NEAR(static_cast<double>(parameter_count(layout)) / 1e9, e.params_b,
                e.params_b < 0.01 ? 1e-7 : 0.01) << e.name;
  }
  EXPECT_EQ(find_shape("gpt-5"), nullptr);
}

const TensorLayout* find(const std::vector<TensorLayout>& l, const std::string& name) {
  for (const auto& t : l)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(SynthShapes, TensorNamesShapesAndConverterOrder) {
  // TinyLlama: ne[0] is the input dimension; HF names sorted as strings decide the order.
  const auto l = tensor_layout(*find_shape("tinyllama-1.1b"));
  const std::vector<std::string> head = {"output.weight",         "token_embd.weight",     "blk.0.attn_norm.weight",
                                         "blk.0.ffn_down.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
                                         "blk.0.ffn_norm.weight", "blk.0.attn_k.weight",   "blk.0.attn_output.weight",
                                         "blk.0.attn_q.weight",   "blk.0.attn_v.weight",   "blk.1.attn_norm.weight"};
  for (size_t i = 0; i < head.size(); ++i) EXPECT_EQ(l[i].name, head[i]) << i;
  EXPECT_EQ(l[9 * 2 + 2].name, "blk.10.attn_norm.weight");  // string order: blk.1, blk.10, ...
  EXPECT_EQ(l.back().name, "output_norm.weight");
  using V = std::vector<uint64_t>;
  EXPECT_EQ(find(l, "token_embd.weight")->shape, (V{2048, 32000}));
  EXPECT_EQ(find(l, "output.weight")->shape, (V{2048, 32000}));
  EXPECT_EQ(find(l, "blk.21.attn_q.weight")->shape, (V{2048, 2048}));
  EXPECT_EQ(find(l, "blk.21.attn_k.weight")->shape, (V{2048, 256}));  // 4 kv heads x 64
  EXPECT_EQ(find(l, "blk.21.attn_v.weight")->shape, (V{2048, 256}));
  EXPECT_EQ(find(l, "blk.21.attn_output.weight")->shape, (V{2048, 2048}));
  EXPECT_EQ(find(l, "blk.21.ffn_gate.weight")->shape, (V{2048, 5632}));
  EXPECT_EQ(find(l, "blk.21.ffn_up.weight")->shape, (V{2048, 5632}));
  EXPECT_EQ(find(l, "blk.21.ffn_down.weight")->shape, (V{5632, 2048}));
  EXPECT_EQ(find(l, "blk.21.attn_norm.weight")->shape, (V{2048}));
  EXPECT_EQ(find(l, "blk.21.ffn_norm.weight")->shape, (V{2048}));
  EXPECT_EQ(find(l, "blk.22.attn_norm.weight"), nullptr);
  std::set<std::string> names;
  for (const auto& t : l) EXPECT_TRUE(names.insert(t.name).second) << "duplicate " << t.name;

  // Llama 3.2 1B: rope_freqs first (generated), tied embeddings: no output.weight.
  const auto l32 = tensor_layout(*find_shape("llama-3.2-1b"));
  EXPECT_EQ(l32[0].name, "rope_freqs.weight");
  EXPECT_EQ(l32[0].shape, (V{32}));
  EXPECT_EQ(l32[1].name, "token_embd.weight");
  EXPECT_EQ(find(l32, "output.weight"), nullptr);
  EXPECT_EQ(find(l32, "blk.15.attn_k.weight")->shape, (V{2048, 512}));

  // Qwen2.5 0.5B: q/k/v biases (before their weights), tied embeddings.
  const auto lq = tensor_layout(*find_shape("qwen2.5-0.5b"));
  EXPECT_EQ(lq[0].name, "token_embd.weight");
  EXPECT_EQ(find(lq, "output.weight"), nullptr);
  EXPECT_EQ(find(lq, "blk.3.attn_q.bias")->shape, (V{896}));
  EXPECT_EQ(find(lq, "blk.3.attn_k.bias")->shape, (V{128}));
  EXPECT_EQ(find(lq, "blk.3.attn_v.bias")->shape, (V{128}));
  EXPECT_EQ(find(lq, "blk.3.attn_k.weight")->shape, (V{896, 128}));
  EXPECT_EQ(find(lq, "blk.3.ffn_down.weight")->shape, (V{4864, 896}));
  const std::vector<std::string> qblk = {"blk.0.attn_norm.weight", "blk.0.ffn_down.weight",   "blk.0.ffn_gate.weight",
                                         "blk.0.ffn_up.weight",    "blk.0.ffn_norm.weight",   "blk.0.attn_k.bias",
                                         "blk.0.attn_k.weight",    "blk.0.attn_output.weight", "blk.0.attn_q.bias",
                                         "blk.0.attn_q.weight",    "blk.0.attn_v.bias",       "blk.0.attn_v.weight"};
  for (size_t i = 0; i < qblk.size(); ++i) EXPECT_EQ(lq[1 + i].name, qblk[i]);

  // Qwen3: per-head q/k norms (head_dim values) right after attn_norm in string order.
  const auto l3 = tensor_layout(*find_shape("qwen3-0.6b"));
  EXPECT_EQ(find(l3, "output.weight"), nullptr);
  EXPECT_EQ(find(l3, "blk.27.attn_q_norm.weight")->shape, (V{128}));
  EXPECT_EQ(find(l3, "blk.27.attn_k_norm.weight")->shape, (V{128}));
  EXPECT_EQ(find(l3, "blk.27.attn_q.weight")->shape, (V{1024, 2048}));  // 16 heads x 128
  EXPECT_EQ(find(l3, "blk.27.attn_output.weight")->shape, (V{2048, 1024}));
  // Gemma 2: four norms per block (HF input_layernorm, post_attention_layernorm,
  // pre_feedforward_layernorm, post_feedforward_layernorm), no output.weight.
  const auto l2 = tensor_layout(*find_shape("gemma2-2b"));
  EXPECT_EQ(find(l2, "output.weight"), nullptr);
  for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"})
    EXPECT_EQ(find(l2, std::string("blk.25.") + n + ".weight")->shape, (V{2304})) << n;
  EXPECT_EQ(find(l2, "blk.25.attn_q.weight")->shape, (V{2304, 2048}));  // 8 heads x 256
  EXPECT_EQ(find(l2, "blk.25.attn_k.weight")->shape, (V{2304, 1024}));
  const auto lg = tensor_layout(*find_shape("gemma-2b"));
  EXPECT_EQ(find(lg, "blk.17.attn_k.weight")->shape, (V{2048, 256}));  // one KV head
  EXPECT_EQ(find(lg, "blk.17.post_ffw_norm.weight"), nullptr);

  // Layer and vocabulary overrides.
  const auto small = tensor_layout(*find_shape("tinyllama-1.1b"), 2, 1000);
  EXPECT_EQ(small.size(), 2u * 9 + 3);
  EXPECT_EQ(find(small, "token_embd.weight")->shape, (V{2048, 1000}));
}

TEST(SynthShapes, HyperParameterKeysOfQwen3AndTheGemmas) {
  // What the converter writes (conversion/qwen.py via TextModel, conversion/gemma.py).
  gguf::Metadata q3;
  add_hparams(q3, *find_shape("qwen3-0.6b"), 2, 32000, 7);
  EXPECT_EQ(*q3.get_uint("qwen3.attention.key_length"), 128u);
  EXPECT_EQ(*q3.get_uint("qwen3.attention.value_length"), 128u);
  EXPECT_EQ(*q3.get_float("qwen3.rope.freq_base"), 1e6);
  EXPECT_FALSE(q3.contains("qwen3.rope.dimension_count"));

  gguf::Metadata g2;
  add_hparams(g2, *find_shape("gemma2-2b"), 26, 256000, 1);
  EXPECT_EQ(g2.entries().front().key, "gemma2.context_length");  // Gemma2Model's own order
  EXPECT_EQ(*g2.get_uint("gemma2.attention.key_length"), 256u);
  EXPECT_EQ(*g2.get_float("gemma2.attn_logit_softcapping"), 50.0);
  EXPECT_EQ(*g2.get_float("gemma2.final_logit_softcapping"), 30.0);
  EXPECT_EQ(*g2.get_uint("gemma2.attention.sliding_window"), 4096u);
  EXPECT_EQ(g2.find("gemma2.attn_logit_softcapping")->type(), gguf::ValueType::FLOAT32);
  EXPECT_FALSE(g2.contains("gemma2.rope.freq_base"));
  EXPECT_EQ(g2.entries().back().key, "gemma2.attention.sliding_window");

  gguf::Metadata g;
  add_hparams(g, *find_shape("gemma-2b"), 18, 256000, 1);
  EXPECT_EQ(*g.get_uint("gemma.attention.head_count_kv"), 1u);
  EXPECT_FALSE(g.contains("gemma.attn_logit_softcapping"));
  EXPECT_EQ(find_shape("gemma2-tiny")->sliding_window, 32u);
}

TEST(SynthShapes, Llama3RopeFactorsFollowTheRule) {
  const Shape& s = *find_shape("llama-3.2-1b");
  const auto f = llama3_rope_factors(s);
  ASSERT_EQ(f.size(), 32u);
  // The llama3 rule, in double: wavelength 2 pi base^(2i/d) below 8192/4 keeps the frequency,
  // above 8192/1 divides it by 32, in between interpolates smoothly.
  for (size_t i = 0; i < f.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi * std::pow(500000.0, 2.0 * static_cast<double>(i) / 64);
    double want;
    if (wavelen < 2048) want = 1;
    else if (wavelen > 8192) want = 32;
    else {
      const double smooth = (8192 / wavelen - 1) / (4 - 1);
      want = 1 / ((1 - smooth) / 32 + smooth);
    }
    EXPECT_NEAR(f[i], want, 1e-5 * want) << i;
    if (i > 0) {
      EXPECT_GE(f[i], f[i - 1]);
    }
  }
  EXPECT_EQ(f.front(), 1.0f);
  EXPECT_EQ(f.back(), 32.0f);
  EXPECT_TRUE(llama3_rope_factors(*find_shape("tinyllama-1.1b")).empty());
}

// ------------------------------------------------------------------------------------------------
// Synthesized files

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("omni_synth_test_" + std::to_string(::getpid()))) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

TempDir& temp() {
  static TempDir dir;
  return dir;
}

std::string vocab_path() { return std::string(OMNI_SHARED_DIR) + "/vocab/ggml-vocab-llama-spm.gguf"; }

SynthOptions small_qwen(uint64_t seed, const std::string& out) {
  SynthOptions o;
  o.shape = "qwen2.5-0.5b";
  o.mix = Mix::Q8_0;
  o.seed = seed;
  o.vocab_path = vocab_path();
  o.n_layers = 2;
  o.out_path = out;
  return o;
}

// Files made once and shared by several tests.
const std::string& made(const std::string& key) {
  static std::map<std::string, std::string> files;
  auto it = files.find(key);
  if (it != files.end()) return it->second;
  SynthOptions o;
  if (key == "qwen-seed1") o = small_qwen(1, temp().file(key + ".gguf"));
  else if (key == "qwen-seed1-again") o = small_qwen(1, temp().file(key + ".gguf")), o.threads = 3;
  else if (key == "qwen-seed2") o = small_qwen(2, temp().file(key + ".gguf"));
  else if (key == "tinyllama-1layer") {
    o.shape = "tinyllama-1.1b";
    o.mix = Mix::Q4_0;
    o.seed = 7;
    o.n_layers = 1;
    o.out_path = temp().file(key + ".gguf");
  } else if (key == "llama32-f32") {
    o.shape = "llama-3.2-1b";
    o.mix = Mix::F32;
    o.seed = 3;
    o.n_layers = 1;
    o.vocab_path = vocab_path();
    o.out_path = temp().file(key + ".gguf");
  }
  auto r = synthesize(o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (r.ok()) {
    EXPECT_EQ(r->path, o.out_path);
    EXPECT_EQ(r->file_bytes, fs::file_size(o.out_path));
  }
  return files[key] = o.out_path;
}

gguf::File open_or_die(const std::string& path) {
  auto f = gguf::File::open(path);
  if (!f) {
    ADD_FAILURE() << f.error().message;
    std::abort();
  }
  return std::move(*f);
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

uint64_t get_u(const gguf::File& f, const std::string& key) {
  auto v = f.metadata().get_uint(key);
  EXPECT_TRUE(v.ok()) << key;
  return v.ok() ? *v : 0;
}
double get_f(const gguf::File& f, const std::string& key) {
  auto v = f.metadata().get_float(key);
  EXPECT_TRUE(v.ok()) << key;
  return v.ok() ? *v : 0;
}

std::vector<float> dequantize_tensor(const gguf::File& f, const gguf::TensorInfo& t) {
  std::vector<float> out(t.n_elements);
  kernels::dequantize_row(t.type, f.tensor_data(t).data(), out.data(), static_cast<int64_t>(t.n_elements));
  return out;
}

TEST(SynthFile, TensorsAndMetadataMatchTheShapeTable) {
  for (const char* key : {"qwen-seed1", "tinyllama-1layer", "llama32-f32"}) {
    SCOPED_TRACE(key);
    const gguf::File f = open_or_die(made(key));
    const std::string arch = *f.metadata().get_string("general.architecture");
    const Shape* s = nullptr;
    for (const auto& sh : shapes())
      if (f.metadata().get_string("general.name").ok() && *f.metadata().get_string("general.name") == sh.display_name)
        s = &sh;
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(arch, s->arch);
    const uint32_t layers = std::string(key) == "qwen-seed1" ? 2 : 1;
    const uint32_t vocab = std::string(key) == "tinyllama-1layer" ? s->n_vocab : 32000;  // else the copied vocab
    const auto layout = tensor_layout(*s, layers, vocab);
    ASSERT_EQ(f.tensors().size(), layout.size());
    const TensorType type = std::string(key) == "qwen-seed1"         ? TensorType::Q8_0
                            : std::string(key) == "tinyllama-1layer" ? TensorType::Q4_0
                                                                     : TensorType::F32;
    for (size_t i = 0; i < layout.size(); ++i) {
      const auto& t = f.tensors()[i];
      EXPECT_EQ(t.name, layout[i].name);
      EXPECT_EQ(t.shape, layout[i].shape) << t.name;
      // llama-quantize's rule: a quantized mix (not Q8_0) writes output.weight as Q6_K.
      const TensorType want = t.shape.size() != 2                                          ? TensorType::F32
                              : t.name == "output.weight" && type == TensorType::Q4_0 ? TensorType::Q6_K
                                                                                      : type;
      EXPECT_EQ(t.type, want) << t.name;
    }
    // Sizes from the shape fields directly.
    EXPECT_EQ(f.find_tensor("token_embd.weight")->shape, (std::vector<uint64_t>{s->n_embd, vocab}));
    EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->shape,
              (std::vector<uint64_t>{s->n_embd, uint64_t{s->n_head_kv} * (s->n_embd / s->n_head)}));
    EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<uint64_t>{s->n_ff, s->n_embd}));

    const std::string a = arch + ".";
    EXPECT_EQ(get_u(f, a + "block_count"), layers);
    EXPECT_EQ(get_u(f, a + "context_length"), s->n_ctx);
    EXPECT_EQ(get_u(f, a + "embedding_length"), s->n_embd);
    EXPECT_EQ(get_u(f, a + "feed_forward_length"), s->n_ff);
    EXPECT_EQ(get_u(f, a + "attention.head_count"), s->n_head);
    EXPECT_EQ(get_u(f, a + "attention.head_count_kv"), s->n_head_kv);
    EXPECT_EQ(get_f(f, a + "rope.freq_base"), static_cast<double>(s->rope_freq_base));
    EXPECT_EQ(get_f(f, a + "attention.layer_norm_rms_epsilon"), static_cast<double>(s->rms_eps));
    EXPECT_EQ(f.metadata().find(a + "rope.freq_base")->type(), gguf::ValueType::FLOAT32);
    EXPECT_EQ(f.metadata().find(a + "block_count")->type(), gguf::ValueType::UINT32);
    const uint64_t ftype = type == TensorType::Q8_0 ? 7 : type == TensorType::Q4_0 ? 2 : 0;  // llama_ftype
    EXPECT_EQ(get_u(f, "general.file_type"), ftype);
    EXPECT_EQ(get_u(f, "general.quantization_version"), 2u);
    if (arch == "llama") {
      EXPECT_EQ(get_u(f, a + "vocab_size"), vocab);
      EXPECT_EQ(get_u(f, a + "rope.dimension_count"), s->n_embd / s->n_head);
    } else {
      EXPECT_FALSE(f.metadata().contains(a + "rope.dimension_count"));  // the qwen2 converter omits it
    }
    EXPECT_EQ(f.metadata().contains(a + "attention.key_length"), s->name == "llama-3.2-1b");
    // Key order as the converter writes it.
    std::vector<std::string> keys;
    for (const auto& e : f.metadata().entries()) keys.push_back(e.key);
    EXPECT_EQ(keys[0], "general.architecture");
    auto pos = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) - keys.begin(); };
    EXPECT_LT(pos(a + "block_count"), pos(a + "context_length"));
    EXPECT_LT(pos(a + "attention.layer_norm_rms_epsilon"), pos("general.file_type"));
    EXPECT_LT(pos("general.file_type"), pos("general.quantization_version"));
    EXPECT_LT(pos("general.quantization_version"), pos("tokenizer.ggml.model"));
    EXPECT_EQ(keys.back().rfind("tokenizer.", 0), 0u);
  }
}

TEST(SynthFile, SameSeedSameBytesWhateverTheThreadsOtherSeedDifferent) {
  const auto a = read_all(made("qwen-seed1"));
  const auto b = read_all(made("qwen-seed1-again"));  // 3 threads
  const auto c = read_all(made("qwen-seed2"));
  ASSERT_GT(a.size(), 1000000u);
  EXPECT_TRUE(a == b) << "same seed, different bytes";
  ASSERT_EQ(a.size(), c.size());
  // Other seed: the same header but for the seed in general.description, and different,
  // uncorrelated weights.
  const gguf::File f1 = open_or_die(made("qwen-seed1")), f2 = open_or_die(made("qwen-seed2"));
  ASSERT_EQ(f1.metadata().size(), f2.metadata().size());
  for (size_t i = 0; i < f1.metadata().size(); ++i) {
    const auto &e1 = f1.metadata().entries()[i], &e2 = f2.metadata().entries()[i];
    EXPECT_EQ(e1.key, e2.key);
    if (e1.key != "general.description") {
      EXPECT_TRUE(e1.value == e2.value) << e1.key;
    }
  }
  EXPECT_NE(f1.metadata().find("general.description")->as_string()->find("--seed 1"), std::string::npos);
  ASSERT_EQ(f1.tensors().size(), f2.tensors().size());
  for (size_t i = 0; i < f1.tensors().size(); ++i) {
    EXPECT_EQ(f1.tensors()[i].name, f2.tensors()[i].name);
    EXPECT_EQ(f1.tensors()[i].offset, f2.tensors()[i].offset);
    EXPECT_EQ(f1.tensors()[i].type, f2.tensors()[i].type);
  }
  EXPECT_FALSE(std::equal(a.begin() + static_cast<ptrdiff_t>(f1.data_offset()), a.end(),
                          c.begin() + static_cast<ptrdiff_t>(f2.data_offset())));
  for (const auto& t : f1.tensors()) {
    const auto x = dequantize_tensor(f1, t), y = dequantize_tensor(f2, *f2.find_tensor(t.name));
    double sxy = 0, sxx = 0, syy = 0, mx = 0, my = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      mx += x[i];
      my += y[i];
    }
    mx /= static_cast<double>(x.size());
    my /= static_cast<double>(y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      sxy += (x[i] - mx) * (y[i] - my);
      sxx += (x[i] - mx) * (x[i] - mx);
      syy += (y[i] - my) * (y[i] - my);
    }
    const double corr = sxy / std::sqrt(sxx * syy);
    EXPECT_LT(std::fabs(corr), 5.0 / std::sqrt(static_cast<double>(x.size()))) << t.name;  // 5 sigma
  }
}

TEST(SynthFile, WeightsHaveTheStatedDistributions) {
  for (const char* key : {"qwen-seed1", "tinyllama-1layer", "llama32-f32"}) {
    SCOPED_TRACE(key);
    const gguf::File f = open_or_die(made(key));
    for (const auto& t : f.tensors()) {
      if (t.name == "rope_freqs.weight") continue;
      const auto v = dequantize_tensor(f, t);
      double sum = 0, sum2 = 0;
      size_t within1 = 0;
      for (float x : v) sum += x;
      const double mean = sum / static_cast<double>(v.size());
      for (float x : v) sum2 += (x - mean) * (x - mean);
      const double sd = std::sqrt(sum2 / static_cast<double>(v.size()));
      for (float x : v) within1 += std::fabs(x - mean) <= sd;
      double want_mean = 0, want_sd = 0.06;
      if (t.name == "token_embd.weight") want_sd = 0.3;
      else if (t.name == "output.weight") want_sd = 0.1;
      else if (t.name.find("_norm.weight") != std::string::npos) want_mean = 1, want_sd = 0.1;
      const double n = static_cast<double>(v.size());
      // Sampling error of the mean is sd/sqrt(n), of the sd about sd/sqrt(2n); 6 sigma, plus what
      // 4-bit quantization adds to the variance (Q4_0: step amax/8 ~ sd/2, so +1% of the variance).
      const double quant = t.type == TensorType::Q4_0 ? 0.01 : 0.002;
      EXPECT_NEAR(mean, want_mean, 6 * want_sd / std::sqrt(n) + 1e-4) << t.name;
      EXPECT_NEAR(sd, want_sd, want_sd * (6 / std::sqrt(2 * n) + quant)) << t.name;
      // Normal: 68.27% within one sd (5 sigma of the binomial; Q4_0's coarse grid moves values).
      if (n > 100000) {
        const double tol = 5 * std::sqrt(0.6827 * 0.3173 / n) + (t.type == TensorType::Q4_0   ? 0.02
                                                                 : t.type == TensorType::Q6_K ? 0.005
                                                                                              : 0.0);
        EXPECT_NEAR(static_cast<double>(within1) / n, 0.6827, tol) << t.name;
      }
    }
  }
}

TEST(SynthFile, F32WeightsAreTheCounterBasedValues) {
  const gguf::File f = open_or_die(made("llama32-f32"));
  const Shape& s = *find_shape("llama-3.2-1b");
  const auto layout = tensor_layout(s, 1, 32000);
  for (const auto& t : layout) {
    const gguf::TensorInfo* info = f.find_tensor(t.name);
    ASSERT_NE(info, nullptr);
    const auto data = f.tensor_data(*info);
    for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{2}, t.n_elements() / 2 + 1, t.n_elements() - 1}) {
      float got;
      std::memcpy(&got, data.data() + i * 4, 4);
      EXPECT_EQ(got, synth_value(3, s, t, i)) << t.name << "[" << i << "]";
    }
  }
  // rope_freqs holds the llama3 factors.
  const auto rope = llama3_rope_factors(s);
  const auto data = f.tensor_data(*f.find_tensor("rope_freqs.weight"));
  ASSERT_EQ(data.size(), rope.size() * 4);
  EXPECT_EQ(std::memcmp(data.data(), rope.data(), data.size()), 0);
}

TEST(SynthFile, CopiedVocabularyIsUnchanged) {
  const gguf::File vocab = open_or_die(vocab_path());
  for (const char* key : {"qwen-seed1", "llama32-f32"}) {
    const gguf::File f = open_or_die(made(key));
    std::vector<const gguf::Metadata::Entry*> want, got;
    for (const auto& e : vocab.metadata().entries())
      if (e.key.rfind("tokenizer.", 0) == 0) want.push_back(&e);
    for (const auto& e : f.metadata().entries())
      if (e.key.rfind("tokenizer.", 0) == 0) got.push_back(&e);
    ASSERT_EQ(got.size(), want.size()) << key;
    ASSERT_GE(want.size(), 5u);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i]->key, want[i]->key) << key;
      EXPECT_TRUE(got[i]->value == want[i]->value) << key << " " << want[i]->key;
    }
    EXPECT_EQ(f.find_tensor("token_embd.weight")->shape[1], 32000u) << key;
  }
}

TEST(SynthFile, GeneratedVocabularyIsACompleteSpmVocabulary) {
  const gguf::File f = open_or_die(made("tinyllama-1layer"));
  const auto& md = f.metadata();
  EXPECT_EQ(*md.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(*md.get_string("tokenizer.ggml.pre"), "default");
  EXPECT_EQ(*md.get_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(*md.get_uint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(*md.get_uint("tokenizer.ggml.unknown_token_id"), 0u);
  EXPECT_TRUE(*md.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(*md.get_bool("tokenizer.ggml.add_eos_token"));
  const auto& tokens = (*md.get_array("tokenizer.ggml.tokens"))->strings;
  const auto scores = *(*md.get_array("tokenizer.ggml.scores"))->to_floats();
  const auto types = *(*md.get_array("tokenizer.ggml.token_type"))->to_ints();
  ASSERT_EQ(tokens.size(), 32000u);
  ASSERT_EQ(scores.size(), 32000u);
  ASSERT_EQ(types.size(), 32000u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(types[0], 2);
  EXPECT_EQ(types[1], 3);
  EXPECT_EQ(types[2], 3);
  const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(tokens[3 + b], std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    EXPECT_EQ(types[3 + b], 6);
  }
  const std::set<std::string> all(tokens.begin(), tokens.end());
  EXPECT_EQ(all.size(), tokens.size()) << "duplicate tokens";
  const std::string space = "\xE2\x96\x81";
  EXPECT_TRUE(all.count(space));
  for (char c = 'a'; c <= 'z'; ++c) EXPECT_TRUE(all.count(std::string(1, c)));
  size_t reachable = 0, multi = 0;
  for (size_t i = 259; i < tokens.size(); ++i) {
    EXPECT_EQ(types[i], 1);
    if (i > 259) {
      EXPECT_LT(scores[i], scores[i - 1]) << i;
    }
    const std::string& t = tokens[i];
    EXPECT_EQ(t.find(space, 1), std::string::npos) << "word mark inside " << t;
    // A multi-character piece can be built by SPM's bigram merges: it splits into two tokens.
    const bool single = t == space || t.size() == 1;
    if (single) continue;
    ++multi;
    for (size_t cut = 1; cut < t.size(); ++cut)
      if (all.count(t.substr(0, cut)) && all.count(t.substr(cut))) {
        ++reachable;
        break;
      }
  }
  EXPECT_GT(multi, 31000u);
  EXPECT_EQ(reachable, multi);
}

// ------------------------------------------------------------------------------------------------
// Sparse output

// Size of the GGUF v3 header of `f`, computed from the format's encoding rules: magic, version,
// tensor count, KV count; each KV as key (u64 length + bytes), u32 type, value; each tensor info as
// name, u32 n_dims, u64 dims, u32 type, u64 offset.
uint64_t value_bytes(const gguf::Value& v);
uint64_t array_bytes(const gguf::Array& a) {
  uint64_t n = 4 + 8;  // element type, count
  switch (a.elem_type) {
    case gguf::ValueType::STRING:
      for (const auto& s : a.strings) n += 8 + s.size();
      return n;
    case gguf::ValueType::ARRAY:
      for (const auto& x : a.arrays) n += array_bytes(x);
      return n;
    default: return n + a.raw.size();
  }
}
uint64_t value_bytes(const gguf::Value& v) {
  switch (v.type()) {
    case gguf::ValueType::STRING: return 8 + v.as_string()->size();
    case gguf::ValueType::ARRAY: return array_bytes(*v.as_array());
    case gguf::ValueType::UINT8:
    case gguf::ValueType::INT8:
    case gguf::ValueType::BOOL: return 1;
    case gguf::ValueType::UINT16:
    case gguf::ValueType::INT16: return 2;
    case gguf::ValueType::UINT32:
    case gguf::ValueType::INT32:
    case gguf::ValueType::FLOAT32: return 4;
    default: return 8;
  }
}
uint64_t header_bytes(const gguf::File& f) {
  uint64_t n = 4 + 4 + 8 + 8;
  for (const auto& e : f.metadata().entries()) n += 8 + e.key.size() + 4 + value_bytes(e.value);
  for (const auto& t : f.tensors()) n += 8 + t.name.size() + 4 + 8 * t.shape.size() + 4 + 8;
  return n;
}

TEST(SynthSparse, FullSizeTinyLlamaQ8_0) {
  SynthOptions o;
  o.shape = "tinyllama-1.1b";
  o.mix = Mix::Q8_0;
  o.sparse = true;
  o.out_path = temp().file("tinyllama-sparse.gguf");
  auto r = synthesize(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const gguf::File f = open_or_die(o.out_path);
  ASSERT_EQ(f.tensors().size(), 201u);  // TinyLlama's tensor count: 22 x 9 + 3
  EXPECT_EQ(r->n_tensors, 201u);
  EXPECT_EQ(r->n_params, 1100048384u);  // 2 x 2048 x 32000 + 22 x 44044288 + 2048

  // Data bytes from TinyLlama's dimensions and Q8_0's 34 bytes per 32 values: every tensor size is
  // a multiple of 32, so there is no padding between tensors.
  const uint64_t q8 = 34, embd = 2048, ff = 5632, kv = 256, vocab = 32000;
  const uint64_t per_layer = (embd * embd * 2 + embd * kv * 2 + embd * ff * 3) / 32 * q8 + 2 * embd * 4;
  const uint64_t data = 2 * embd * vocab / 32 * q8 + 22 * per_layer + embd * 4;
  EXPECT_EQ(data, 1169072128u);
  const uint64_t header = header_bytes(f);
  const uint64_t data_offset = (header + 31) / 32 * 32;
  EXPECT_EQ(f.data_offset(), data_offset);
  EXPECT_EQ(fs::file_size(o.out_path), data_offset + data);
  EXPECT_EQ(r->file_bytes, data_offset + data);
  uint64_t offset = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset, offset) << t.name;
    offset += t.n_bytes;
  }
  // Holes: the file takes far less disk than its length (if the file system supports holes).
  struct stat st {};
  ASSERT_EQ(::stat(o.out_path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 64u << 20);
  // Data read as zeros.
  const auto d = f.tensor_data(*f.find_tensor("blk.21.ffn_down.weight"));
  EXPECT_TRUE(std::all_of(d.begin(), d.begin() + 4096, [](uint8_t b) { return b == 0; }));
}

TEST(SynthMix, Q4_K_MFollowsLlamaQuantizesPerTensorTypesAndHoldsTheWeights) {
  // Two llama blocks: use_more_bits(i, 2) picks block 1 only (i >= 7*2/8), so attn_v and ffn_down
  // are Q6_K in block 1 and Q4_K in block 0; output.weight is Q6_K, the rest Q4_K.
  SynthOptions o;
  o.shape = "tinyllama-1.1b";
  o.mix = Mix::Q4_K_M;
  o.n_layers = 2;
  o.threads = 2;
  o.out_path = temp().file("tiny-q4km.gguf");
  auto r = synthesize(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const gguf::File f = open_or_die(o.out_path);
  EXPECT_EQ(get_u(f, "general.file_type"), 15u);
  const Shape* shape = find_shape("tinyllama-1.1b");
  const auto layout = tensor_layout(*shape, 2, shape->n_vocab);
  for (size_t i = 0; i < layout.size(); ++i) {
    const auto& t = f.tensors()[i];
    TensorType want = TensorType::Q4_K;
    if (!layout[i].is_matrix()) want = TensorType::F32;
    else if (t.name == "output.weight" || t.name == "blk.1.attn_v.weight" || t.name == "blk.1.ffn_down.weight")
      want = TensorType::Q6_K;
    EXPECT_EQ(t.type, want) << t.name;
    if (t.name != "blk.0.attn_k.weight" && t.name != "blk.1.ffn_down.weight") continue;
    // The bytes hold the synthetic values within the format's error (one grid step of a
    // super-block: Q4_K 2 amax / 15, Q6_K amax / 32).
    std::vector<float> v(t.n_elements);
    kernels::dequantize_row(t.type, f.tensor_data(t).data(), v.data(), static_cast<int64_t>(t.n_elements));
    for (size_t s = 0; s < v.size(); s += 256) {
      double amax = 0, err = 0;
      for (size_t j = s; j < s + 256; ++j) {
        const double want_v = synth_value(o.seed, *shape, layout[i], j);
        amax = std::max(amax, std::fabs(want_v));
        err = std::max(err, std::fabs(want_v - v[j]));
      }
      ASSERT_LE(err, t.type == TensorType::Q4_K ? 2 * amax / 15 : amax / 32) << t.name << " at " << s;
    }
  }
}

TEST(SynthSparse, Llama3_70BHeaderForPlanning) {
  SynthOptions o;
  o.shape = "llama-3-70b";
  o.mix = Mix::Q4_0;
  o.sparse = true;
  o.out_path = temp().file("llama70b-sparse.gguf");
  auto r = synthesize(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const gguf::File f = open_or_die(o.out_path);
  EXPECT_EQ(f.tensors().size(), 723u);
  uint64_t data = 0;
  for (const auto& t : f.tensors()) data += (t.n_bytes + 31) / 32 * 32;
  EXPECT_EQ(fs::file_size(o.out_path), f.data_offset() + data);
  // Q4_0: 18 bytes per 32 matrix values; 4 bytes per norm value; output.weight (8192 x 128256) is
  // Q6_K as llama-quantize writes it: 210 bytes per 256 values.
  const uint64_t norms = (2 * 80 + 1) * uint64_t{8192};
  const uint64_t output = uint64_t{8192} * 128256;
  EXPECT_EQ(f.find_tensor("output.weight")->type, TensorType::Q6_K);
  EXPECT_EQ(data, (70553706496ull - norms - output) / 32 * 18 + output / 256 * 210 + norms * 4);
  EXPECT_EQ(get_u(f, "llama.block_count"), 80u);
  EXPECT_EQ(get_u(f, "llama.vocab_size"), 128256u);
}

// ------------------------------------------------------------------------------------------------
// Grown vocabularies

std::string shared_vocab(const std::string& name) { return std::string(OMNI_SHARED_DIR) + "/vocab/ggml-vocab-" + name + ".gguf"; }

gguf::Metadata tokenizer_keys(const std::string& path) {
  const gguf::File f = open_or_die(path);
  gguf::Metadata md;
  for (const auto& e : f.metadata().entries())
    if (e.key.rfind("tokenizer.", 0) == 0) md.set(e.key, e.value);
  return md;
}

const std::vector<std::string>& strings_of(const gguf::Metadata& md, const std::string& key) {
  static const std::vector<std::string> none;
  const gguf::Value* v = md.find(key);
  const gguf::Array* a = v ? v->as_array() : nullptr;
  EXPECT_TRUE(a != nullptr) << key;
  return a ? a->strings : none;
}
std::vector<int64_t> ints_of(const gguf::Metadata& md, const std::string& key) {
  const gguf::Value* v = md.find(key);
  auto ints = v && v->as_array() ? v->as_array()->to_ints() : std::nullopt;
  EXPECT_TRUE(ints.has_value()) << key;
  return ints.value_or(std::vector<int64_t>{});
}
std::vector<float> floats_of(const gguf::Metadata& md, const std::string& key) {
  const gguf::Value* v = md.find(key);
  auto floats = v && v->as_array() ? v->as_array()->to_floats() : std::nullopt;
  EXPECT_TRUE(floats.has_value()) << key;
  return floats.value_or(std::vector<float>{});
}

// The source's ordinary tokens (type normal), the pool every added token is made from.
std::set<std::string> ordinary_texts(const gguf::Metadata& md) {
  const auto& texts = strings_of(md, "tokenizer.ggml.tokens");
  const auto types = ints_of(md, "tokenizer.ggml.token_type");
  std::set<std::string> out;
  for (size_t i = 0; i < texts.size() && i < types.size(); ++i)
    if (types[i] == 1) out.insert(texts[i]);
  return out;
}

// Tokens encode and decode back to the text, and the vocabulary has n tokens for the tokenizer.
void expect_round_trips(const gguf::Metadata& md, size_t n) {
  auto tok = Tokenizer::from_metadata(md);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  EXPECT_EQ(tok->n_vocab(), n);
  for (const std::string text : {"Hello world! The quick brown fox jumps over the lazy dog.",
                                 "{\"name\": \"Ada Lovelace\", \"age\": 36, \"tags\": [\"math\", \"poetry\"]}",
                                 "  indented\n\tcode(x) = x * 2;  // comment 12345 \xC3\xA9t\xC3\xA9"}) {
    const auto ids = tok->encode(text, false, false);
    auto back = tok->decode(ids);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(*back, text);
  }
}

// How many of the added tokens [n0, n) encoding their own text gives back alone (every 16th tried).
// Without their merge rule (BPE) or score (SPM) the tokenizer could never form one.
std::pair<size_t, size_t> formed_alone(const gguf::Metadata& md, size_t n0) {
  auto tok = Tokenizer::from_metadata(md);
  EXPECT_TRUE(tok.ok());
  if (!tok.ok()) return {0, 0};
  size_t formed = 0, tried = 0;
  for (size_t id = n0; id < tok->n_vocab(); id += 16, ++tried) {
    std::string text = tok->token_to_piece(static_cast<TokenId>(id));
    if (tok->kind() == Tokenizer::Kind::kSentencePiece && text.rfind(' ', 0) == 0) text.erase(0, 1);
    const auto ids = tok->encode(text, false, false);
    formed += ids.size() == 1 && ids[0] == static_cast<TokenId>(id);
  }
  return {formed, tried};
}

TEST(SynthVocab, DeepseekGrownTo151936IsAConsistentBpeVocabulary) {
  const gguf::Metadata source = tokenizer_keys(shared_vocab("deepseek-llm"));
  const auto& src_texts = strings_of(source, "tokenizer.ggml.tokens");
  const auto& src_merges = strings_of(source, "tokenizer.ggml.merges");
  const size_t n0 = src_texts.size();
  ASSERT_LT(n0, 151936u);
  const std::set<std::string> pool = ordinary_texts(source);
  ASSERT_GT(pool.size(), 1000u);

  gguf::Metadata md = source;
  auto n = grow_vocab(md, 151936, 1);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 151936u);
  const auto& texts = strings_of(md, "tokenizer.ggml.tokens");
  const auto& merges = strings_of(md, "tokenizer.ggml.merges");
  const auto types = ints_of(md, "tokenizer.ggml.token_type");
  ASSERT_EQ(texts.size(), 151936u);
  ASSERT_EQ(types.size(), 151936u);
  ASSERT_EQ(merges.size(), src_merges.size() + (151936u - n0));
  EXPECT_TRUE(std::equal(src_texts.begin(), src_texts.end(), texts.begin()));
  EXPECT_TRUE(std::equal(src_merges.begin(), src_merges.end(), merges.begin()));
  const std::set<std::string> src_set(src_texts.begin(), src_texts.end());
  for (size_t i = n0; i < texts.size(); ++i) {
    const std::string& rule = merges[src_merges.size() + (i - n0)];
    const size_t space = rule.find(' ');
    ASSERT_NE(space, std::string::npos) << rule;
    const std::string left = rule.substr(0, space), right = rule.substr(space + 1);
    ASSERT_TRUE(pool.count(left) && pool.count(right)) << i << ": " << rule;
    ASSERT_EQ(texts[i], left + right) << i;
    ASSERT_NE(right.rfind("\xC4\xA0", 0), 0u) << "a word start on the right: " << rule;
    ASSERT_EQ(types[i], 1) << i;
    ASSERT_EQ(src_set.count(texts[i]), 0u) << "already present: " << texts[i];
  }
  expect_round_trips(md, 151936);
  // The added texts are as long on average as the source's latest tenth of ordinary pieces.
  std::vector<size_t> late;
  for (size_t i = 0; i < n0; ++i)
    if (types[i] == 1) late.push_back(src_texts[i].size());
  late.erase(late.begin(), late.end() - static_cast<std::ptrdiff_t>(late.size() / 10));
  double late_mean = 0, added_mean = 0;
  for (size_t l : late) late_mean += static_cast<double>(l) / static_cast<double>(late.size());
  for (size_t i = n0; i < texts.size(); ++i) added_mean += static_cast<double>(texts[i].size()) / static_cast<double>(texts.size() - n0);
  std::printf("mean text bytes: source's last tenth %.2f, added %.2f\n", late_mean, added_mean);
  EXPECT_NEAR(added_mean, late_mean, 0.1 * late_mean);
  const auto [formed, tried] = formed_alone(md, n0);
  std::printf("deepseek grown: %zu of %zu added tokens tried form from their own text\n", formed, tried);
  EXPECT_GT(formed, tried / 10);

  gguf::Metadata again = source, other = source;
  ASSERT_TRUE(grow_vocab(again, 151936, 1).ok());
  ASSERT_TRUE(grow_vocab(other, 151936, 2).ok());
  EXPECT_TRUE(*again.find("tokenizer.ggml.tokens") == *md.find("tokenizer.ggml.tokens"));
  EXPECT_TRUE(*again.find("tokenizer.ggml.merges") == *md.find("tokenizer.ggml.merges"));
  EXPECT_FALSE(*other.find("tokenizer.ggml.tokens") == *md.find("tokenizer.ggml.tokens"));
}

TEST(SynthVocab, SpmGrowsWithLowerScoresAndJoinedPieces) {
  const gguf::Metadata source = tokenizer_keys(shared_vocab("llama-spm"));
  const auto& src_texts = strings_of(source, "tokenizer.ggml.tokens");
  const auto src_scores = floats_of(source, "tokenizer.ggml.scores");
  const size_t n0 = src_texts.size();
  const std::set<std::string> pool = ordinary_texts(source);
  gguf::Metadata md = source;
  auto n = grow_vocab(md, 40000, 7);
  ASSERT_TRUE(n.ok()) << n.error().message;
  const auto& texts = strings_of(md, "tokenizer.ggml.tokens");
  const auto scores = floats_of(md, "tokenizer.ggml.scores");
  const auto types = ints_of(md, "tokenizer.ggml.token_type");
  ASSERT_EQ(texts.size(), 40000u);
  ASSERT_EQ(scores.size(), 40000u);
  ASSERT_EQ(types.size(), 40000u);
  EXPECT_TRUE(std::equal(src_texts.begin(), src_texts.end(), texts.begin()));
  EXPECT_TRUE(std::equal(src_scores.begin(), src_scores.end(), scores.begin()));
  const auto src_types = ints_of(source, "tokenizer.ggml.token_type");
  float lowest = 0;  // of the ordinary pieces: the others (control, byte) never merge
  for (size_t i = 0; i < n0; ++i)
    if (src_types[i] == 1) lowest = std::min(lowest, src_scores[i]);
  const std::string word_start = "\xE2\x96\x81";
  for (size_t i = n0; i < texts.size(); ++i) {
    EXPECT_LT(scores[i], i == n0 ? lowest : scores[i - 1]) << i;
    EXPECT_EQ(types[i], 1) << i;
    // Some split of the text is two ordinary source tokens, the right one not starting a word.
    bool joined = false;
    for (size_t cut = 1; cut < texts[i].size() && !joined; ++cut) {
      const std::string right = texts[i].substr(cut);
      joined = pool.count(texts[i].substr(0, cut)) && pool.count(right) && right.rfind(word_start, 0) != 0;
    }
    ASSERT_TRUE(joined) << i << ": " << texts[i];
  }
  expect_round_trips(md, 40000);
  const auto [formed, tried] = formed_alone(md, n0);
  std::printf("llama-spm grown: %zu of %zu added tokens tried form from their own text\n", formed, tried);
  EXPECT_GT(formed, tried / 10);
}

TEST(SynthVocab, RefusesSizesBelowTheFileOrAbsurdAndTooFewPairs) {
  const gguf::Metadata source = tokenizer_keys(shared_vocab("gpt-2"));
  const size_t n0 = strings_of(source, "tokenizer.ggml.tokens").size();
  gguf::Metadata md = source;
  auto r = grow_vocab(md, static_cast<uint32_t>(n0 - 1), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find(std::to_string(n0)), std::string::npos) << r.error().message;
  r = grow_vocab(md, kMaxGrownVocab + 1, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message.find("1048576"), std::string::npos) << r.error().message;
  r = grow_vocab(md, static_cast<uint32_t>(n0), 1);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*md.find("tokenizer.ggml.tokens") == *source.find("tokenizer.ggml.tokens"));

  // Two ordinary pieces make at most four new ones.
  gguf::Metadata tiny;
  tiny.set("tokenizer.ggml.model", gguf::Value::string("llama"));
  tiny.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::Array::of_strings({"<unk>", "a", "b"})));
  tiny.set("tokenizer.ggml.token_type",
           gguf::Value::array(gguf::Array::of(gguf::ValueType::INT32, std::vector<int32_t>{2, 1, 1})));
  gguf::Metadata four = tiny;
  ASSERT_TRUE(grow_vocab(four, 7, 1).ok());
  EXPECT_EQ((std::set<std::string>(strings_of(four, "tokenizer.ggml.tokens").begin() + 3,
                                   strings_of(four, "tokenizer.ggml.tokens").end())),
            (std::set<std::string>{"aa", "ab", "ba", "bb"}));
  r = grow_vocab(tiny, 8, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);

  SynthOptions o = small_qwen(1, temp().file("never-grown.gguf"));
  o.vocab_path.clear();
  o.vocab_size = 50000;
  auto without_file = synthesize(o);
  ASSERT_FALSE(without_file.ok());
  EXPECT_EQ(without_file.error().code, ErrorCode::InvalidArgument);
  o.vocab_path = shared_vocab("gpt-2");
  o.vocab_size = 100;
  auto s = synthesize(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::InvalidArgument);
  EXPECT_FALSE(fs::exists(o.out_path));
}

TEST(SynthVocab, GrownModelHasMatchingMatricesAndSameBytesTwice) {
  SynthOptions o;
  o.shape = "custom:arch=qwen2,layers=1,embd=64,heads=2,kv_heads=1,ff=128,vocab=4096";
  o.mix = Mix::Q8_0;
  o.seed = 3;
  o.vocab_path = shared_vocab("deepseek-llm");
  o.vocab_size = 110000;
  o.out_path = temp().file("grown-a.gguf");
  auto a = synthesize(o);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->n_vocab, 110000u);
  EXPECT_EQ(a->vocab_grown_from, 102400u);
  o.out_path = temp().file("grown-b.gguf");
  o.threads = 1;
  ASSERT_TRUE(synthesize(o).ok());
  EXPECT_TRUE(read_all(temp().file("grown-a.gguf")) == read_all(temp().file("grown-b.gguf")));

  const gguf::File f = open_or_die(temp().file("grown-a.gguf"));
  EXPECT_EQ(f.find_tensor("token_embd.weight")->shape[1], 110000u);
  EXPECT_EQ(f.find_tensor("output.weight")->shape[1], 110000u);
  gguf::Metadata md;
  for (const auto& e : f.metadata().entries())
    if (e.key.rfind("tokenizer.", 0) == 0) md.set(e.key, e.value);
  expect_round_trips(md, 110000);
}

// ------------------------------------------------------------------------------------------------
// Errors

TEST(SynthErrors, AreReportedNotThrown) {
  SynthOptions o;
  o.shape = "tinyllama-1.1b";
  o.out_path = temp().file("never.gguf");
  o.sparse = true;

  SynthOptions bad = o;
  bad.shape = "llama-9";
  auto r = synthesize(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound) << r.error().message;  // no shape has that name
  EXPECT_NE(r.error().message.find("llama-9"), std::string::npos);

  bad = o;
  bad.mix = static_cast<Mix>(19);  // LLAMA_FTYPE_MOSTLY_IQ2_XXS: no quantizer for it
  r = synthesize(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
  EXPECT_NE(r.error().message.find("ftype 19"), std::string::npos) << r.error().message;

  bad = o;
  bad.vocab_path = temp().file("missing-vocab.gguf");
  r = synthesize(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound) << r.error().message;
  EXPECT_NE(r.error().message.find("missing-vocab.gguf"), std::string::npos);

  // A GGUF without tokenizer.ggml.tokens is not a vocabulary.
  gguf::Writer w;
  w.metadata().set("general.architecture", gguf::Value::string("llama"));
  ASSERT_TRUE(w.write_file(temp().file("no-tokens.gguf"), [](size_t, gguf::TensorSink&) -> Result<void> { return {}; })
                  .ok());
  bad = o;
  bad.vocab_path = temp().file("no-tokens.gguf");
  r = synthesize(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
  EXPECT_NE(r.error().message.find("tokenizer.ggml.tokens"), std::string::npos);

  bad = o;
  bad.n_layers = 5000;
  EXPECT_FALSE(synthesize(bad).ok());

  bad = o;
  bad.out_path = temp().file("no-such-dir/x.gguf");
  r = synthesize(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().message.empty());

  EXPECT_FALSE(fs::exists(o.out_path));
}

}  // namespace
}  // namespace omni::model
