#include "model/synth.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <span>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/system_error.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "kernels/quantize.h"

namespace omni::model {
namespace {

using gguf::TensorType;
using gguf::Value;

// ---------------------------------------------------------------------------------------------
// Counter-based normal numbers: element i of a tensor is a function of (key, i) only.

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

uint64_t mix64(uint64_t z) {  // SplitMix64's output function
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t tensor_key(uint64_t seed, std::string_view name) { return mix64(mix64(seed + kGolden) ^ fnv1a(name)); }

struct Distribution {
  float mean = 0, std = 0;
};

Distribution distribution(const Shape& shape, TensorRole role) {
  switch (role) {
    case TensorRole::TokenEmbedding: return {0.0f, shape.synth_embd_std};
    case TensorRole::Output: return {0.0f, 0.1f};
    case TensorRole::Norm: return {1.0f, 0.1f};
    case TensorRole::Weight:
    case TensorRole::Bias: return {0.0f, 0.06f};
    case TensorRole::RopeFreqs: break;
  }
  return {};
}

// The generator uses only IEEE +, -, *, / and sqrt (no libm, whose last bits vary between
// versions and platforms) and must not be contracted into fused multiply-adds, so the weights are
// the same bits on every machine. Clang and GCC both contract by default where the ISA has FMA
// (aarch64, -march=native), hence the pragmas.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// ln(x) for x in [2^-24, 1]: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
// s = (m - 1) / (m + 1), |s| <= 0.172, summed to s^9 (error below 1e-9).
float log_unit(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  int e = static_cast<int>(b >> 23) - 127;
  float m = std::bit_cast<float>((b & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  e += high ? 1 : 0;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  const float series = s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return static_cast<float>(e) * 0.693147180559945f + (2.0f * s + 2.0f * s * series);
}

// sin and cos of a in [0, pi/4]: Taylor series to a^9 / a^10 (error below 2e-9).
void sincos_octant(float a, float& sin_a, float& cos_a) {
  const float a2 = a * a;
  sin_a = a + a * a2 * (-1.0f / 6 + a2 * (1.0f / 120 + a2 * (-1.0f / 5040 + a2 * (1.0f / 362880))));
  cos_a = 1.0f + a2 * (-0.5f + a2 * (1.0f / 24 + a2 * (-1.0f / 720 + a2 * (1.0f / 40320 + a2 * (-1.0f / 3628800)))));
}

// Standard normal pair number p: Box-Muller on SplitMix64 step p + 1, radius from 24 bits, angle
// from the other 24 (reduced exactly: 2 bits of quadrant, 1 of octant, 21 within the octant).
struct NormalPair {
  float a, b;
};
NormalPair normal_pair(uint64_t key, uint64_t p) {
  const uint64_t bits = mix64(key + (p + 1) * kGolden);
  const float u1 = static_cast<float>(static_cast<int32_t>((bits >> 40) + 1)) * 0x1p-24f;  // (0, 1]
  const float r = std::sqrt(-2.0f * log_unit(u1));
  const uint32_t k = static_cast<uint32_t>(bits) & 0xFFFFFFu;  // angle = 2 pi k / 2^24
  const uint32_t quadrant = k >> 22, in_quadrant = k & 0x3FFFFFu;
  const uint32_t upper = in_quadrant >> 21;  // second octant: use the complement angle
  const uint32_t t = upper ? 0x400000u - in_quadrant : in_quadrant;  // <= 2^21
  float sc[2];
  sincos_octant(static_cast<float>(static_cast<int32_t>(t)) * (1.57079632679489662f * 0x1p-22f), sc[1], sc[0]);
  // (cos, sin) of the angle within the quadrant, then rotated by quadrant * pi/2.
  const uint32_t swap = upper ^ (quadrant & 1u);
  const float x = sc[swap], y = sc[swap ^ 1u];
  const uint32_t neg_x = ((quadrant + 1u) >> 1) & 1u, neg_y = quadrant >> 1;
  const float cos_t = std::bit_cast<float>(std::bit_cast<uint32_t>(x) ^ (neg_x << 31));
  const float sin_t = std::bit_cast<float>(std::bit_cast<uint32_t>(y) ^ (neg_y << 31));
  return {r * cos_t, r * sin_t};
}

float scaled(Distribution d, float z) { return d.mean + d.std * z; }
void scale(float* v, size_t n, Distribution d) {
  for (size_t i = 0; i < n; ++i) v[i] = d.mean + d.std * v[i];
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// Elements [first, first + n) of the tensor's standard normal sequence (element 2p and 2p+1 are
// pair p's two values).
void normals(uint64_t key, uint64_t first, float* out, size_t n) {
  size_t k = 0;
  uint64_t i = first;
  if (n == 0) return;
  if (i & 1) {
    out[k++] = normal_pair(key, i >> 1).b;
    ++i;
  }
  for (; k + 2 <= n; k += 2, i += 2) {
    const NormalPair z = normal_pair(key, i >> 1);
    out[k] = z.a;
    out[k + 1] = z.b;
  }
  if (k < n) out[k] = normal_pair(key, i >> 1).a;
}

// Fills rows of one tensor: generates floats and converts them to the tensor's type.
class RowFiller {
 public:
  RowFiller(uint64_t seed, const Shape& shape, const TensorLayout& t, TensorType type)
      : t_(t), type_(type), key_(tensor_key(seed, t.name)), dist_(distribution(shape, t.role)), ne0_(t.shape[0]),
        row_bytes_(*gguf::row_bytes(type, t.shape[0])) {
    if (t.role == TensorRole::RopeFreqs) rope_ = llama3_rope_factors(shape);
  }
  uint64_t rows() const { return t_.n_elements() / ne0_; }
  uint64_t row_bytes() const { return row_bytes_; }

  void fill(uint64_t r0, uint64_t r1, uint8_t* dst) const {
    std::vector<float> row(ne0_);
    for (uint64_t r = r0; r < r1; ++r) {
      if (t_.role == TensorRole::RopeFreqs) {
        std::copy(rope_.begin(), rope_.end(), row.begin());
      } else {
        normals(key_, r * ne0_, row.data(), ne0_);
        scale(row.data(), ne0_, dist_);
      }
      kernels::quantize_row(type_, row.data(), dst + (r - r0) * row_bytes_, static_cast<int64_t>(ne0_));
    }
  }

 private:
  const TensorLayout& t_;
  TensorType type_;
  uint64_t key_;
  Distribution dist_;
  uint64_t ne0_;
  uint64_t row_bytes_;
  std::vector<float> rope_;
};

// Runs fill(rows [r0, r1)) split over `threads` threads; returns once all are started. The caller
// joins them (Workers joins in its destructor, so no path leaves a thread running).
class Workers {
 public:
  Workers() = default;
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() { join(); }
  void start(const RowFiller& f, uint64_t r0, uint64_t r1, uint8_t* dst, unsigned threads) {
    const uint64_t n = r1 - r0;
    for (unsigned k = 0; k < threads; ++k) {
      const uint64_t a = r0 + n * k / threads, b = r0 + n * (k + 1) / threads;
      if (a < b) threads_.emplace_back([&f, a, b, r0, dst] { f.fill(a, b, dst + (a - r0) * f.row_bytes()); });
    }
  }
  void join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

constexpr uint64_t kBatchBytes = 16ull << 20;  // per buffer; two buffers in flight

// Streams one tensor to the sink in row batches: while batch k is written, batch k + 1 is filled.
Result<void> write_tensor(const RowFiller& f, gguf::TensorSink& sink, unsigned threads) {
  const uint64_t rows = f.rows(), rb = f.row_bytes();
  const uint64_t batch_rows = std::clamp<uint64_t>(kBatchBytes / rb, 1, rows);
  const uint64_t n_batches = (rows + batch_rows - 1) / batch_rows;
  if (rows * rb < (256u << 10)) threads = 1;  // not worth a thread
  std::vector<uint8_t> buf[2];
  buf[0].resize(batch_rows * rb);
  if (n_batches > 1) buf[1].resize(batch_rows * rb);
  auto batch_range = [&](uint64_t b) { return std::pair{b * batch_rows, std::min(rows, (b + 1) * batch_rows)}; };

  if (threads <= 1) {
    for (uint64_t b = 0; b < n_batches; ++b) {
      auto [r0, r1] = batch_range(b);
      f.fill(r0, r1, buf[0].data());
      if (auto r = sink.write(std::span<const uint8_t>(buf[0].data(), (r1 - r0) * rb)); !r) return r;
    }
    return {};
  }
  Workers workers;
  {
    auto [r0, r1] = batch_range(0);
    workers.start(f, r0, r1, buf[0].data(), threads);
    workers.join();
  }
  for (uint64_t b = 0; b < n_batches; ++b) {
    if (b + 1 < n_batches) {
      auto [n0, n1] = batch_range(b + 1);
      workers.start(f, n0, n1, buf[(b + 1) % 2].data(), threads);
    }
    auto [r0, r1] = batch_range(b);
    auto written = sink.write(std::span<const uint8_t>(buf[b % 2].data(), (r1 - r0) * rb));
    workers.join();
    if (!written) return written;
  }
  return {};
}

// Every mix's types must be writable by quantize_row (the K ones included).
bool synth_mix_allowed(Mix mix) { return mix_from_name(mix_name(mix)) == mix; }

// Copies the tokenizer.* keys of a vocabulary GGUF; returns its token count.
Result<uint32_t> copy_vocab(gguf::Metadata& md, const std::string& path) {
  auto file = gguf::File::open(path);
  if (!file) return file.error().with_context("vocabulary");
  const Value* tokens = file->metadata().find("tokenizer.ggml.tokens");
  const gguf::Array* arr = tokens ? tokens->as_array() : nullptr;
  if (!arr || arr->elem_type != gguf::ValueType::STRING || arr->size() == 0)
    return Error{ErrorCode::InvalidArgument, "vocabulary '" + path + "' has no tokenizer.ggml.tokens string array"};
  if (arr->size() > UINT32_MAX)
    return Error{ErrorCode::InvalidArgument, "vocabulary '" + path + "' has too many tokens"};
  for (const auto& e : file->metadata().entries())
    if (e.key.rfind("tokenizer.", 0) == 0) md.set(e.key, e.value);
  return static_cast<uint32_t>(arr->size());
}

// A small deterministic generator for the vocabulary (independent of the weight seed).
class SplitMix {
 public:
  explicit SplitMix(uint64_t s) : state_(s) {}
  uint64_t next() { return mix64(state_ += kGolden); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  size_t below(size_t n) { return static_cast<size_t>(uniform() * static_cast<double>(n)); }
  size_t biased_below(size_t n) {  // favours small indices, like frequent pieces
    const double u = uniform();
    return static_cast<size_t>(u * u * static_cast<double>(n));
  }

 private:
  uint64_t state_;
};

// Whether `text` begins with the vocabulary's word-start mark (SentencePiece's U+2581, byte-level
// BPE's U+0120 for a space): real merges join a word's start only to the word's continuation.
bool starts_word(const std::string& text, bool spm) {
  return text.rfind(spm ? "\xE2\x96\x81" : "\xC4\xA0", 0) == 0;
}

}  // namespace

Result<uint32_t> grow_vocab(gguf::Metadata& md, uint32_t n_vocab, uint64_t seed) {
  const Value* tokens_value = md.find("tokenizer.ggml.tokens");
  const gguf::Array* tokens_array = tokens_value ? tokens_value->as_array() : nullptr;
  if (!tokens_array || tokens_array->elem_type != gguf::ValueType::STRING || tokens_array->size() == 0)
    return Error{ErrorCode::InvalidArgument, "the vocabulary has no tokenizer.ggml.tokens string array"};
  const size_t n0 = tokens_array->size();
  if (n_vocab < n0)
    return Error{ErrorCode::InvalidArgument, "vocabulary size " + std::to_string(n_vocab) +
                                                 " is below the vocabulary file's " + std::to_string(n0) + " tokens"};
  if (n_vocab > kMaxGrownVocab)
    return Error{ErrorCode::InvalidArgument, "vocabulary size " + std::to_string(n_vocab) + " is over " +
                                                 std::to_string(kMaxGrownVocab)};
  if (n_vocab == n0) return static_cast<uint32_t>(n0);

  const Value* model_value = md.find("tokenizer.ggml.model");
  const std::string* model = model_value ? model_value->as_string() : nullptr;
  if (!model || (*model != "llama" && *model != "gpt2"))
    return Error{ErrorCode::InvalidArgument,
                 "cannot grow a vocabulary whose tokenizer.ggml.model is not llama or gpt2"};
  const bool spm = *model == "llama";

  std::vector<std::string> texts = tokens_array->strings;
  std::vector<int64_t> types;
  if (const Value* v = md.find("tokenizer.ggml.token_type")) {
    const gguf::Array* a = v->as_array();
    auto ints = a ? a->to_ints() : std::nullopt;
    if (!ints || ints->size() != n0)
      return Error{ErrorCode::InvalidArgument,
                   "tokenizer.ggml.token_type must hold " + std::to_string(n0) + " integers, one per token"};
    types = std::move(*ints);
  }
  std::vector<float> scores;
  if (const Value* v = md.find("tokenizer.ggml.scores")) {
    const gguf::Array* a = v->as_array();
    auto floats = a ? a->to_floats() : std::nullopt;
    if (!floats || floats->size() != n0)
      return Error{ErrorCode::InvalidArgument,
                   "tokenizer.ggml.scores must hold " + std::to_string(n0) + " numbers, one per token"};
    scores = std::move(*floats);
  }
  std::vector<std::string> merges;
  if (!spm) {
    const Value* v = md.find("tokenizer.ggml.merges");
    const gguf::Array* a = v ? v->as_array() : nullptr;
    if (!a || a->elem_type != gguf::ValueType::STRING)
      return Error{ErrorCode::InvalidArgument, "a gpt2 vocabulary needs a tokenizer.ggml.merges string array"};
    merges = a->strings;
  }

  // Ordinary tokens (type normal; no space, which would break a merge rule "left right"), in id
  // order: BPE and SPM files number frequent pieces first.
  std::vector<uint32_t> ordinary;
  for (size_t i = 0; i < n0; ++i)
    if ((types.empty() || types[i] == 1) && !texts[i].empty() && texts[i].find(' ') == std::string::npos)
      ordinary.push_back(static_cast<uint32_t>(i));
  std::vector<uint32_t> continuations;  // those that may stand on the right of a merge
  for (uint32_t i : ordinary)
    if (!starts_word(texts[i], spm)) continuations.push_back(i);
  if (ordinary.empty() || continuations.empty())
    return Error{ErrorCode::InvalidArgument, "the vocabulary has no ordinary tokens to grow from"};

  std::unordered_set<std::string> seen(texts.begin(), texts.end());
  SplitMix rng(mix64(seed ^ 0x564F'4341'4247'524Full));
  const size_t needed = n_vocab - n0;
  // A small vocabulary may have fewer new pairs than asked for: give up with an error rather than
  // draw forever.
  const uint64_t max_draws = 4 * static_cast<uint64_t>(needed) + 100'000;
  // Two random pieces joined are longer than what a real vocabulary adds as it grows (deepseek-llm:
  // 10.8 bytes on average against 7.5 for its own last 10,000 pieces), and code that walks the
  // vocabulary's texts scales with their length. So each added token first draws a length from
  // the source's latest tenth of ordinary pieces (its latest merges) and then looks for an unseen
  // pair of that length.
  std::vector<size_t> late_lengths;
  for (size_t k = ordinary.size() - std::max<size_t>(1, ordinary.size() / 10); k < ordinary.size(); ++k)
    late_lengths.push_back(texts[ordinary[k]].size());
  size_t shortest_left = SIZE_MAX, shortest_right = SIZE_MAX;
  for (uint32_t i : ordinary) shortest_left = std::min(shortest_left, texts[i].size());
  for (uint32_t i : continuations) shortest_right = std::min(shortest_right, texts[i].size());
  // Scores continue below the ordinary pieces' lowest (control and byte tokens may sit far lower
  // but never compete in merges).
  float score = 0.0f;
  for (uint32_t i : ordinary)
    if (!scores.empty()) score = std::min(score, scores[i]);
  auto next_score = [&score] {
    const float lower = score - 1.0f;
    return score = lower < score ? lower : std::nextafter(score, -HUGE_VALF);
  };
  texts.reserve(n_vocab);
  for (uint64_t draws = 0; texts.size() < n_vocab; ++draws) {
    if (draws == max_draws)
      return Error{ErrorCode::InvalidArgument,
                   "found only " + std::to_string(texts.size() - n0) + " new pairs of the vocabulary's " +
                       std::to_string(ordinary.size()) + " ordinary tokens, not " + std::to_string(needed)};
    const size_t length = std::max(late_lengths[rng.below(late_lengths.size())], shortest_left + shortest_right);
    const std::string* left = nullptr;
    const std::string* right = nullptr;
    for (int tries = 0; tries < 64 && !left; ++tries) {
      const std::string& l = texts[ordinary[rng.biased_below(ordinary.size())]];
      const std::string& r = texts[continuations[rng.biased_below(continuations.size())]];
      if (l.size() + r.size() == length) left = &l, right = &r;
    }
    if (!left) continue;
    std::string piece = *left + *right;
    if (!seen.insert(piece).second) continue;
    if (!spm) merges.push_back(*left + " " + *right);
    texts.push_back(std::move(piece));
    if (!types.empty()) types.push_back(1);
    if (!scores.empty()) scores.push_back(next_score());  // below every ordinary piece: merged last
  }

  md.set("tokenizer.ggml.tokens", Value::array(gguf::Array::of_strings(std::move(texts))));
  if (!types.empty()) {
    std::vector<int32_t> narrow(types.begin(), types.end());
    md.set("tokenizer.ggml.token_type", Value::array(gguf::Array::of(gguf::ValueType::INT32, narrow)));
  }
  if (!scores.empty())
    md.set("tokenizer.ggml.scores", Value::array(gguf::Array::of(gguf::ValueType::FLOAT32, scores)));
  if (!spm) md.set("tokenizer.ggml.merges", Value::array(gguf::Array::of_strings(std::move(merges))));
  return n_vocab;
}

float synth_value(uint64_t seed, const Shape& shape, const TensorLayout& t, uint64_t index) {
  if (t.role == TensorRole::RopeFreqs) {
    const auto f = llama3_rope_factors(shape);
    return index < f.size() ? f[index] : 0.0f;
  }
  float z;
  normals(tensor_key(seed, t.name), index, &z, 1);
  return scaled(distribution(shape, t.role), z);
}

Result<void> add_spm_vocab(gguf::Metadata& md, uint32_t n_vocab) {
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark
  const std::string letters_weighted =
      "eeeeeeeeeeeetttttttttaaaaaaaaooooooooiiiiiiinnnnnnnssssssshhhhhhrrrrrrdddddllllcccuuummmwwffggyyppbbvkjxqz";
  std::vector<std::string> singles{kSpace};
  for (char c = 'a'; c <= 'z'; ++c) singles.emplace_back(1, c);
  for (char c = 'A'; c <= 'Z'; ++c) singles.emplace_back(1, c);
  for (char c = '0'; c <= '9'; ++c) singles.emplace_back(1, c);
  for (char c : std::string(".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`")) singles.emplace_back(1, c);
  const size_t fixed = 3 + 256 + singles.size();
  if (n_vocab < fixed + 1)
    return Error{ErrorCode::InvalidArgument, "a generated SPM vocabulary needs at least " + std::to_string(fixed + 1) +
                                                 " tokens, not " + std::to_string(n_vocab)};
  const size_t n_merged = n_vocab - fixed;

  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte
  tokens.reserve(n_vocab);
  auto push = [&](std::string s, float score, int32_t type) {
    tokens.push_back(std::move(s));
    scores.push_back(score);
    types.push_back(type);
  };
  push("<unk>", 0.0f, 2);
  push("<s>", 0.0f, 3);
  push("</s>", 0.0f, 3);
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    push(hex, 0.0f, 6);
  }
  // Merged pieces: each is the concatenation of two earlier tokens (so SPM's bigram merging can
  // reach it); the word-start mark appears only in front.
  SplitMix rng(0x5350'4D56'4F43'4142ull);  // fixed: the vocabulary depends only on n_vocab
  std::vector<std::string> merged;
  merged.reserve(n_merged);
  std::unordered_set<std::string> seen(singles.begin(), singles.end());
  auto letter = [&] { return std::string(1, letters_weighted[rng.below(letters_weighted.size())]); };
  while (merged.size() < n_merged) {
    std::string left, right;
    const double r = rng.uniform();
    if (r < 0.3) left = kSpace;
    else if (r < 0.5 || merged.empty()) left = letter();
    else left = merged[rng.biased_below(merged.size())];
    if (rng.uniform() < 0.7 || merged.empty()) {
      right = letter();
    } else {
      right = merged[rng.biased_below(merged.size())];
      if (right.rfind(kSpace, 0) == 0) continue;
    }
    std::string piece = left + right;
    if (piece.size() > 24 || !seen.insert(piece).second) continue;
    merged.push_back(std::move(piece));
  }
  for (auto& p : merged) push(std::move(p), -static_cast<float>(tokens.size() - 259), 1);
  for (const auto& s : singles) push(s, -static_cast<float>(tokens.size() - 259), 1);

  md.set("tokenizer.ggml.model", Value::string("llama"));
  md.set("tokenizer.ggml.pre", Value::string("default"));
  md.set("tokenizer.ggml.tokens", Value::array(gguf::Array::of_strings(std::move(tokens))));
  md.set("tokenizer.ggml.scores", Value::array(gguf::Array::of(gguf::ValueType::FLOAT32, scores)));
  md.set("tokenizer.ggml.token_type", Value::array(gguf::Array::of(gguf::ValueType::INT32, types)));
  md.set("tokenizer.ggml.bos_token_id", Value::u32(1));
  md.set("tokenizer.ggml.eos_token_id", Value::u32(2));
  md.set("tokenizer.ggml.unknown_token_id", Value::u32(0));
  md.set("tokenizer.ggml.add_bos_token", Value::boolean(true));
  md.set("tokenizer.ggml.add_eos_token", Value::boolean(false));
  return {};
}

Result<SynthReport> synthesize(const SynthOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  try {
    auto resolved = resolve_shape(o.shape);
    if (!resolved) return resolved.error();
    const Shape* shape = &*resolved;
    if (!synth_mix_allowed(o.mix))
      return Error{ErrorCode::InvalidArgument,
                   "cannot synthesize " + mix_name(o.mix) + " (supported: " + mix_names_text() + ")"};
    if (o.out_path.empty()) return Error{ErrorCode::InvalidArgument, "no output path given"};
    const uint32_t n_layer = o.n_layers ? o.n_layers : shape->n_layer;
    if (n_layer > 1000)
      return Error{ErrorCode::InvalidArgument, "layer count " + std::to_string(n_layer) + " is over 1000"};

    SynthReport report;
    report.path = o.out_path;
    report.shape = shape->name;
    report.mix = o.mix;
    report.n_layer = n_layer;
    report.threads = std::clamp(o.threads ? o.threads : std::thread::hardware_concurrency(), 1u, 256u);

    gguf::Writer writer;
    gguf::Metadata& md = writer.metadata();
    // The converter's order: general.* (meta model), hyper-parameters with general.file_type,
    // general.quantization_version, then the tokenizer.
    md.set("general.architecture", Value::string(shape->arch));
    md.set("general.type", Value::string("model"));
    md.set("general.name", Value::string(shape->display_name));
    md.set("general.basename", Value::string(shape->basename));
    std::string how = "omni synth --shape " + shape->name + " --type " + mix_name(o.mix) +
                      " --seed " + std::to_string(o.seed);
    if (o.n_layers) how += " --layers " + std::to_string(n_layer);
    if (o.vocab_size) how += " --vocab-size " + std::to_string(o.vocab_size);
    md.set("general.description", Value::string("Synthetic random weights, not a trained model (" + how + ")"));
    md.set("general.size_label", Value::string(shape->size_label));

    gguf::Metadata vocab;
    if (!o.vocab_path.empty()) {
      auto n = copy_vocab(vocab, o.vocab_path);
      if (!n) return n.error();
      report.n_vocab = *n;
      report.vocab_from_file = true;
      if (o.vocab_size) {
        auto grown = grow_vocab(vocab, o.vocab_size, o.seed);
        if (!grown) return grown.error().with_context("vocabulary '" + o.vocab_path + "'");
        report.vocab_grown_from = report.n_vocab;
        report.n_vocab = *grown;
      }
    } else {
      if (o.vocab_size)
        return Error{ErrorCode::InvalidArgument, "a vocabulary size needs a vocabulary file to grow"};
      report.n_vocab = shape->n_vocab;
      if (auto r = add_spm_vocab(vocab, report.n_vocab); !r) return r.error();
    }
    add_hparams(md, *shape, n_layer, report.n_vocab, file_type_of(o.mix));
    md.set("general.quantization_version", Value::u32(2));
    for (const auto& e : vocab.entries()) md.set(e.key, e.value);

    const std::vector<TensorLayout> layout = tensor_layout(*shape, n_layer, report.n_vocab);
    // Per-tensor types as llama-quantize would choose them for the mix.
    std::vector<MixTensor> matrices;
    for (const auto& t : layout)
      if (t.is_matrix()) matrices.push_back({t.name, t.shape[0]});
    const MixModel mix_model{shape->arch, n_layer, shape->n_head, shape->n_head_kv, 0};
    const std::vector<MixChoice> choices = mix_tensor_types(o.mix, mix_model, matrices);
    std::vector<TensorType> types;
    types.reserve(layout.size());
    for (size_t i = 0, m = 0; i < layout.size(); ++i)
      types.push_back(layout[i].is_matrix() ? choices[m++].type : TensorType::F32);
    for (size_t i = 0; i < layout.size(); ++i) {
      auto added = writer.add_tensor(gguf::TensorSpec{layout[i].name, types[i], layout[i].shape});
      if (!added) return added.error();
    }
    report.n_tensors = layout.size();
    report.n_params = parameter_count(layout);

    const unsigned threads = report.threads;
    const uint64_t seed = o.seed;
    auto source = [&](size_t index, gguf::TensorSink& sink) -> Result<void> {
      if (o.sparse) return {};
      const TensorLayout& t = layout[index];
      const RowFiller filler(seed, *shape, t, types[index]);
      return write_tensor(filler, sink, threads);
    };
    if (auto r = writer.write_file(o.out_path, source, o.sparse); !r) return r.error();

    std::error_code ec;
    report.file_bytes = std::filesystem::file_size(o.out_path, ec);
    if (ec) return errno_error(ec.value(), "cannot read the size of '" + o.out_path + "'");
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  } catch (const std::exception& e) {
    return Error{ErrorCode::Internal, "synthesizing '" + o.out_path + "' failed: " + e.what()};
  }
}

}  // namespace omni::model
