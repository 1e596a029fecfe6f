#include "store/hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OMNI_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace omni::store {
namespace {

// EVP failures here mean an out-of-memory or a broken OpenSSL build; nothing sensible can follow.
void check(int ok) {
  if (ok != 1) std::abort();
}

constexpr uint32_t kInitial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

#ifdef OMNI_SHA_NI
alignas(16) constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

bool cpu_has_sha_ni() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & (1u << 29));
}

// Runs `blocks` 64-byte blocks of `data` through N hash states at once: the message schedule is
// computed once, and the N round chains (each a chain of dependent sha256rnds2) interleave.
template <int N>
__attribute__((target("sha,sse4.1,ssse3"), always_inline)) inline void compress(uint32_t* const* states,
                                                                                 const uint8_t* data, size_t blocks) {
  const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  __m128i abef[N], cdgh[N];
  for (int i = 0; i < N; ++i) {
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(states[i])), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(states[i] + 4)), 0x1B);
    abef[i] = _mm_alignr_epi8(dcba, efgh, 8);
    cdgh[i] = _mm_blend_epi16(efgh, dcba, 0xF0);
  }
  for (; blocks > 0; --blocks, data += 64) {
    __m128i abef_in[N], cdgh_in[N];
    for (int i = 0; i < N; ++i) abef_in[i] = abef[i], cdgh_in[i] = cdgh[i];
    __m128i w[4];  // message words of the last four groups of 4 rounds
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      __m128i words;
      if (g < 4) {
        words = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * g)), byteswap);
      } else {
        __m128i t = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
        t = _mm_add_epi32(t, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4));
        words = _mm_sha256msg2_epu32(t, w[(g + 3) & 3]);
      }
      w[g & 3] = words;
      const __m128i lo = _mm_add_epi32(words, _mm_load_si128(reinterpret_cast<const __m128i*>(kRound + 4 * g)));
      const __m128i hi = _mm_shuffle_epi32(lo, 0x0E);
      for (int i = 0; i < N; ++i) cdgh[i] = _mm_sha256rnds2_epu32(cdgh[i], abef[i], lo);
      for (int i = 0; i < N; ++i) abef[i] = _mm_sha256rnds2_epu32(abef[i], cdgh[i], hi);
    }
    for (int i = 0; i < N; ++i) abef[i] = _mm_add_epi32(abef[i], abef_in[i]), cdgh[i] = _mm_add_epi32(cdgh[i], cdgh_in[i]);
  }
  for (int i = 0; i < N; ++i) {
    __m128i feba = _mm_shuffle_epi32(abef[i], 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh[i], 0xB1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(states[i]), _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(states[i] + 4), _mm_alignr_epi8(dchg, feba, 8));
  }
}

__attribute__((target("sha,sse4.1,ssse3"))) void compress1(uint32_t* state, const uint8_t* data, size_t blocks) {
  uint32_t* states[1] = {state};
  compress<1>(states, data, blocks);
}

__attribute__((target("sha,sse4.1,ssse3"))) void compress2(uint32_t* a, uint32_t* b, const uint8_t* data,
                                                          size_t blocks) {
  uint32_t* states[2] = {a, b};
  compress<2>(states, data, blocks);
}
#endif

bool use_sha_ni() {
#ifdef OMNI_SHA_NI
  static const bool yes = cpu_has_sha_ni();
  return yes;
#else
  return false;
#endif
}

}  // namespace

// Either an OpenSSL context, or (SHA-NI) the state itself: eight words, a partial block and the
// message length so far.
struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  uint32_t h[8] = {};
  uint8_t block[64] = {};
  size_t buffered = 0;
  uint64_t length = 0;

  Ctx() {
    if (use_sha_ni()) {
      reset();
      return;
    }
    md = EVP_MD_CTX_new();
    if (!md) std::abort();
    check(EVP_DigestInit_ex(md, EVP_sha256(), nullptr));
  }
  Ctx(const Ctx& other) : buffered(other.buffered), length(other.length) {
    std::memcpy(h, other.h, sizeof h);
    std::memcpy(block, other.block, sizeof block);
    if (other.md) {
      md = EVP_MD_CTX_new();
      if (!md) std::abort();
      check(EVP_MD_CTX_copy_ex(md, other.md));
    }
  }
  Ctx& operator=(const Ctx&) = delete;
  ~Ctx() { EVP_MD_CTX_free(md); }

  void reset() {
    std::memcpy(h, kInitial, sizeof h);
    buffered = 0;
    length = 0;
  }

#ifdef OMNI_SHA_NI
  void update_ni(const uint8_t* p, size_t n) {
    length += n;
    if (buffered > 0) {
      const size_t take = std::min(n, sizeof block - buffered);
      std::memcpy(block + buffered, p, take);
      buffered += take, p += take, n -= take;
      if (buffered < sizeof block) return;
      compress1(h, block, 1);
      buffered = 0;
    }
    compress1(h, p, n / 64);
    p += n / 64 * 64, n %= 64;
    std::memcpy(block, p, n);
    buffered = n;
  }

  // Pads and finishes state `s` whose last `tail_len` (< 64) message bytes are at `tail`.
  static Digest finish_ni(uint32_t* s, const uint8_t* tail, size_t tail_len, uint64_t length) {
    uint8_t last[128] = {};
    std::memcpy(last, tail, tail_len);
    last[tail_len] = 0x80;
    const size_t padded = tail_len + 9 <= 64 ? 64 : 128;
    const uint64_t bits = length * 8;
    for (int i = 0; i < 8; ++i) last[padded - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
    compress1(s, last, padded / 64);
    Digest d;
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) d[4 * i + j] = static_cast<uint8_t>(s[i] >> (24 - 8 * j));
    return d;
  }
#endif
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(const Sha256& other) : ctx_(std::make_unique<Ctx>(*other.ctx_)) {}
Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) ctx_ = std::make_unique<Ctx>(*other.ctx_);
  return *this;
}
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

bool Sha256::uses_sha_ni() { return use_sha_ni(); }

void Sha256::update(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
#ifdef OMNI_SHA_NI
  if (!ctx_->md) {
    ctx_->update_ni(bytes.data(), bytes.size());
    return;
  }
#endif
  check(EVP_DigestUpdate(ctx_->md, bytes.data(), bytes.size()));
}

Digest Sha256::finish() {
#ifdef OMNI_SHA_NI
  if (!ctx_->md) {
    Digest d = Ctx::finish_ni(ctx_->h, ctx_->block, ctx_->buffered, ctx_->length);
    ctx_->reset();
    return d;
  }
#endif
  Digest d{};
  unsigned int n = 0;
  check(EVP_DigestFinal_ex(ctx_->md, d.data(), &n));
  if (n != d.size()) std::abort();
  check(EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr));
  return d;
}

Digest Sha256::update_and_hash(std::span<const uint8_t> chunk) {
#ifdef OMNI_SHA_NI
  if (!ctx_->md && ctx_->buffered == 0) {
    // The chunk's blocks are this stream's next blocks: both states take them in one pass.
    uint32_t alone[8];
    std::memcpy(alone, kInitial, sizeof alone);
    const size_t blocks = chunk.size() / 64, tail = chunk.size() % 64;
    compress2(ctx_->h, alone, chunk.data(), blocks);
    ctx_->length += blocks * 64;
    const uint8_t* rest = chunk.data() + blocks * 64;
    std::memcpy(ctx_->block, rest, tail);
    ctx_->buffered = tail;
    ctx_->length += tail;
    return Ctx::finish_ni(alone, rest, tail, chunk.size());
  }
#endif
  Digest d = sha256(chunk);
  update(chunk);
  return d;
}

Digest sha256(std::span<const uint8_t> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

}  // namespace omni::store
