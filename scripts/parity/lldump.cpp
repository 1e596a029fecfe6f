// Reference dumper for scripts/parity/differential.py: runs a GGUF model through llama.cpp's public
// C API (llama.h) and prints, as one JSON object, the greedy steps (chosen id and top-5 log-softmax
// of the raw logits) for given prompts of token ids and the perplexity of given tokens by
// llama.cpp's chunked rule, plus the build's system info, vocabulary size and BOS.
//
//   lldump MODEL SPEC
//     SPEC lines: "prompt N_STEPS id id ..."  (a fresh context per prompt)
//                 "ppl N_CTX N_CHUNKS BOS id id ..."  (BOS -1: keep each chunk's first token)
//
// Not built by this project (it has no llama.cpp): compile it by hand against a llama.cpp build,
// see docs/porting.md. Context: n_ctx 512, n_batch = n_ubatch = n_ctx, 2 threads, flash attention
// off, F16 KV cache, llama.cpp's default weight repacking.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <algorithm>
#include "llama.h"

static void quiet(ggml_log_level, const char*, void*) {}

static std::vector<double> log_softmax(const float* l, int n) {
  double mx = l[0];
  for (int i = 0; i < n; ++i) mx = std::max(mx, (double)l[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp((double)l[i] - mx);
  const double ls = std::log(s) + mx;
  std::vector<double> o(n);
  for (int i = 0; i < n; ++i) o[i] = (double)l[i] - ls;
  return o;
}

static llama_context* fresh(llama_model* m, int n_ctx) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_ctx; cp.n_batch = n_ctx; cp.n_ubatch = n_ctx;
  cp.n_threads = 2; cp.n_threads_batch = 2;
  cp.flash_attn = false; cp.no_perf = true;
  return llama_init_from_model(m, cp);
}

int main(int argc, char** argv) {
  if (argc != 3) { std::fprintf(stderr, "usage: lldump MODEL SPEC\n"); return 2; }
  if (!std::getenv("LLDUMP_VERBOSE")) llama_log_set(quiet, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) { std::fprintf(stderr, "lldump: cannot load %s\n", argv[1]); return 1; }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::ifstream spec(argv[2]);
  std::string line;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  std::printf("{\"system_info\":\"%s\",\"n_vocab\":%d,\"bos\":%d,\"add_bos\":%s,\"prompts\":[",
              llama_print_system_info(), n_vocab, llama_vocab_bos(vocab), llama_vocab_get_add_bos(vocab) ? "true" : "false");
  bool first_prompt = true;
  std::string ppl_json = "null";
  while (std::getline(spec, line)) {
    std::istringstream in(line);
    std::string kind; in >> kind;
    if (kind == "prompt") {
      int n_steps; in >> n_steps;
      std::vector<llama_token> toks; int t; while (in >> t) toks.push_back(t);
      llama_context* ctx = fresh(model, 512);
      if (!ctx) return 1;
      std::printf("%s{\"prompt_tokens\":[", first_prompt ? "" : ",");
      first_prompt = false;
      for (size_t i = 0; i < toks.size(); ++i) std::printf("%s%d", i ? "," : "", toks[i]);
      std::printf("],\"steps\":[");
      std::vector<llama_token> input = toks;
      for (int s = 0; s < n_steps; ++s) {
        if (llama_decode(ctx, llama_batch_get_one(input.data(), (int32_t)input.size())) != 0) { std::fprintf(stderr, "decode failed\n"); return 1; }
        const float* lg = llama_get_logits_ith(ctx, -1);
        auto lp = log_softmax(lg, n_vocab);
        std::vector<int> idx(n_vocab);
        for (int i = 0; i < n_vocab; ++i) idx[i] = i;
        std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int a, int b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
        std::printf("%s{\"id\":%d,\"logprob\":%.9f,\"top\":[", s ? "," : "", idx[0], lp[idx[0]]);
        for (int k = 0; k < 5; ++k) std::printf("%s[%d,%.9f]", k ? "," : "", idx[k], lp[idx[k]]);
        std::printf("]}");
        input = {idx[0]};
      }
      std::printf("]}");
      llama_free(ctx);
    } else if (kind == "ppl") {
      int n_ctx, n_chunks, bos; in >> n_ctx >> n_chunks >> bos;
      std::vector<llama_token> toks; int t; while (in >> t) toks.push_back(t);
      double nll = 0; long scored = 0;
      for (int c = 0; c < n_chunks; ++c) {
        llama_context* ctx = fresh(model, std::max(n_ctx, 32));
        std::vector<llama_token> chunk(toks.begin() + (long)c * n_ctx, toks.begin() + (long)(c + 1) * n_ctx);
        if (bos >= 0) chunk[0] = bos;
        llama_batch batch = llama_batch_init(n_ctx, 0, 1);
        for (int i = 0; i < n_ctx; ++i) {
          batch.token[i] = chunk[i];
          batch.pos[i] = i;
          batch.n_seq_id[i] = 1;
          batch.seq_id[i][0] = 0;
          batch.logits[i] = 1;
        }
        batch.n_tokens = n_ctx;
        if (llama_decode(ctx, batch) != 0) { std::fprintf(stderr, "decode failed\n"); return 1; }
        llama_batch_free(batch);
        for (int i = n_ctx / 2; i < n_ctx - 1; ++i) {
          const float* row = llama_get_logits_ith(ctx, i);
          if (!row) { std::fprintf(stderr, "lldump: no logits at %d\n", i); return 1; }
          auto lp = log_softmax(row, n_vocab);
          nll -= lp[chunk[i + 1]];
          ++scored;
        }
        llama_free(ctx);
      }
      char buf[256];
      std::snprintf(buf, sizeof buf, "{\"perplexity\":%.9g,\"mean_nll\":%.12g,\"scored\":%ld}", std::exp(nll / scored), nll / scored, scored);
      ppl_json = buf;
    }
  }
  std::printf("],\"ppl\":%s}\n", ppl_json.c_str());
  llama_model_free(model);
  return 0;
}
