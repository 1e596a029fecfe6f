// hidden_ppl_cost: the perplexity cost of sending hidden states as F16 or Q8 instead of F32.
//
// Runs the perplexity protocol of `omni perplexity` (chunks of n_ctx tokens, BOS first, second
// half scored) with the model's blocks split into three ranges as a 3-node pipeline would, passing
// the hidden states between ranges through encode -> decode of each format, in-process (the bytes
// are exactly what would cross the wire). Prints one line per format; F32 must equal the local
// perplexity (printed too), which the tool checks (exit 1 otherwise).
//
//   hidden_ppl_cost MODEL.gguf TEXT.txt [n_ctx=128] [chunks=16]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "model/model.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"
#include "net/hidden_codec.h"

using namespace omni;

namespace {

Result<double> split_perplexity(const model::Model& m, const std::vector<int32_t>& tokens, uint32_t n_ctx,
                                uint32_t n_chunks, std::optional<int32_t> bos, net::HiddenEncoding encoding,
                                kernels::ThreadPool& pool) {
  const auto& c = m.config();
  const uint32_t a = std::max(1u, c.n_layer / 3), b = std::max(a + 1, 2 * c.n_layer / 3);
  const uint32_t cuts[4] = {0, a, b, c.n_layer};
  double nll = 0;
  uint64_t scored = 0;
  std::vector<int32_t> chunk(n_ctx);
  for (uint32_t k = 0; k < n_chunks; ++k) {
    std::copy_n(tokens.begin() + uint64_t{k} * n_ctx, n_ctx, chunk.begin());
    if (bos) chunk[0] = *bos;
    std::vector<float> hidden, out;
    for (int r = 0; r < 3; ++r) {
      auto s = model::Session::create(m, cuts[r], cuts[r + 1], n_ctx);
      if (!s) return s.error();
      const bool last = r == 2;
      auto f = (*s)->forward(r == 0 ? std::span<const int32_t>(chunk) : std::span<const int32_t>(), hidden,
                             last ? model::Output::AllLogits : model::Output::Hidden, out, pool);
      if (!f) return f.error();
      if (!last) {
        if (auto e = net::round_trip_hidden(out, c.n_embd, encoding); !e) return e.error();
        hidden.swap(out);
      }
    }
    for (uint32_t i = n_ctx / 2; i + 1 < n_ctx; ++i) {
      const float* row = out.data() + uint64_t{i} * c.n_vocab;
      float max = row[0];
      for (uint32_t v = 1; v < c.n_vocab; ++v) max = std::max(max, row[v]);
      double sum = 0;
      for (uint32_t v = 0; v < c.n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
      nll += std::log(sum) + max - row[chunk[i + 1]];
      ++scored;
    }
  }
  return std::exp(nll / static_cast<double>(scored));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: hidden_ppl_cost MODEL.gguf TEXT.txt [n_ctx=128] [chunks=16]\n");
    return 2;
  }
  const uint32_t n_ctx = argc > 3 ? static_cast<uint32_t>(std::stoul(argv[3])) : 128;
  const uint32_t chunks = argc > 4 ? static_cast<uint32_t>(std::stoul(argv[4])) : 16;
  auto m = model::Model::load(argv[1]);
  if (!m) return std::fprintf(stderr, "%s\n", m.error().message.c_str()), 1;
  auto tok = model::Tokenizer::from_metadata((*m)->file().metadata());
  if (!tok) return std::fprintf(stderr, "%s\n", tok.error().message.c_str()), 1;
  std::ifstream in(argv[2]);
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<int32_t> tokens = tok->encode(text.str(), true, false);
  std::optional<int32_t> bos;
  if (tok->add_bos()) bos = tok->bos();
  kernels::ThreadPool pool(1);
  auto local = model::perplexity(**m, tokens, n_ctx, chunks, bos, pool);
  if (!local) return std::fprintf(stderr, "%s\n", local.error().message.c_str()), 1;
  std::printf("%s: local %.6f", argv[1], local->perplexity);
  int status = 0;
  for (auto e : {net::HiddenEncoding::F32, net::HiddenEncoding::F16, net::HiddenEncoding::Q8}) {
    auto p = split_perplexity(**m, tokens, n_ctx, chunks, bos, e, pool);
    if (!p) return std::fprintf(stderr, "%s\n", p.error().message.c_str()), 1;
    std::printf("  %s %.6f (%+.4f%%)", net::hidden_encoding_name(e), *p, 100.0 * (*p / local->perplexity - 1));
    if (e == net::HiddenEncoding::F32 && *p != local->perplexity) status = 1;
  }
  std::printf("%s\n", status ? "  F32 SPLIT DIFFERS FROM LOCAL" : "");
  return status;
}
