// Synthetic GGUF models: a real model's shape (model/shapes.h) filled with seeded random weights.
//
// The files are complete models — metadata as llama.cpp's converter writes it, a tokenizer, every
// tensor — so loaders, planners, kernels and the network layer can be exercised at real sizes
// without real weights. Weights are a pure function of (seed, tensor name, element index): a
// counter-based generator, so the bytes do not depend on thread count or chunking, and two files
// made with the same seed hold the same underlying weights whatever their tensor type. The
// generator uses IEEE float arithmetic only (no libm calls, no fused multiply-adds), so every
// machine writes the same bytes: nodes can synthesize a model independently and agree.
//
//   token_embd.weight  N(0, 0.3)        output.weight  N(0, 0.1)
//     (N(0, shape.synth_embd_std) for the shapes with tied embeddings that set it, see shapes.h)
//   other matrices     N(0, 0.06)       attn_*.bias    N(0, 0.06)
//   *_norm.weight      1 + N(0, 0.1)    rope_freqs     the llama3 rule (not random)
//   (q/k norms of qwen3 and the post-norms of gemma2 are norms too)
//
// Writing streams tensor by tensor in row batches on all cores; memory use is a few tens of MB
// whatever the model size. `sparse` writes the header and tensor table and leaves the data as holes
// (reads as zeros): a 140 GB model costs a few MB of disk, for memory-planning and sharding tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "gguf/types.h"
#include "model/shapes.h"

namespace omni::model {

struct SynthOptions {
  std::string shape;  // a name from shapes() or a custom shape spec (resolve_shape)
  // The 2-D weights' types: a llama.cpp mix (f32 ... q8_0, q2_k, q3_k_s ... q6_k), each matrix getting
  // the type llama-quantize would give it (mix_tensor_types: output.weight Q6_K, some attn_v and
  // ffn_down with more bits in the _M mixes, fallbacks for rows that do not fit).
  Mix mix = Mix::Q8_0;
  uint64_t seed = 1;
  std::string vocab_path;  // optional GGUF whose tokenizer.* keys are copied; n_vocab becomes its size
  uint32_t vocab_size = 0;  // with vocab_path: grow the copied vocabulary to this many tokens (grow_vocab)
  uint32_t n_layers = 0;   // 0: the shape's block count
  bool sparse = false;
  unsigned threads = 0;  // 0: all cores (at most 256)
  std::string out_path;
};

struct SynthReport {
  std::string path;
  std::string shape;
  Mix mix = Mix::F32;
  uint32_t n_layer = 0;
  uint32_t n_vocab = 0;
  bool vocab_from_file = false;  // else the generated SPM vocabulary
  uint32_t vocab_grown_from = 0;  // the file's token count where vocab_size grew it, else 0
  uint64_t n_params = 0;
  uint64_t n_tensors = 0;
  uint64_t file_bytes = 0;  // apparent size (a sparse file's holes included)
  unsigned threads = 0;
  double seconds = 0;
};

// Writes the model described by `options` to options.out_path (atomically: the old file, if any, is
// replaced only by a complete new one). Errors name what was wrong: an unknown shape or type, an
// unreadable vocabulary file or one without tokenizer.ggml.tokens, a vocabulary size without a
// file or that grow_vocab refuses, a layer count of 0 after override or over 1000, or an I/O failure.
Result<SynthReport> synthesize(const SynthOptions& options);

// The value synthesize() writes, before conversion to the tensor's type, for element `index`
// (row-major, ne[0] fastest) of tensor `t`; for rope_freqs the computed factor (needs `shape`).
float synth_value(uint64_t seed, const Shape& shape, const TensorLayout& t, uint64_t index);

// Grows the vocabulary in `md` (tokenizer.ggml.* keys as a converter writes them, model "llama" or
// "gpt2") to n_vocab tokens, to try code that scales with the vocabulary (the grammar mask) at
// sizes no vocabulary at hand has. Existing tokens keep their ids; each added token is the text
// of two ordinary (type normal) tokens of the original vocabulary joined, as a BPE merge forms a
// longer token: pairs drawn from (seed), favouring low ids, the right one never starting a word
// (no leading U+2581 / U+0120), any text already present skipped. Each added token's length in
// bytes is drawn from those of the source's last tenth of ordinary tokens (its latest merges), so
// the added texts are as long as a real vocabulary's additions, not as two random pieces. Added tokens are type normal;
// with "gpt2" the merge rule "left right" is appended to tokenizer.ggml.merges (so the tokenizer
// can form it, last of all); where scores exist, each added one is lower than every ordinary
// token's score and the previously added one's (SentencePiece merges it last).
// Returns n_vocab. InvalidArgument: n_vocab below the current size or over kMaxGrownVocab, an
// array of the wrong length or type, another tokenizer model, or too few new pairs to reach n_vocab.
inline constexpr uint32_t kMaxGrownVocab = 1u << 20;
Result<uint32_t> grow_vocab(gguf::Metadata& md, uint32_t n_vocab, uint64_t seed);

// The deterministic SentencePiece vocabulary used when no vocabulary file is given: <unk>, <s>,
// </s>, the 256 byte-fallback tokens <0x00>..<0xFF>, then `n_vocab - 259 - (single characters)`
// merged pieces made of lower-case letters (with the word-start mark U+2581 only in front), then the
// single characters, scores decreasing like a real SPM model's. Written as the tokenizer.ggml.*
// keys llama.cpp's converter writes for SPM models (model "llama", pre "default", bos 1, eos 2,
// unk 0, add_bos true, add_eos false). Errors if n_vocab is too small to hold the fixed tokens.
Result<void> add_spm_vocab(gguf::Metadata& md, uint32_t n_vocab);

}  // namespace omni::model
