#include "model/speculative_sampling.h"

#include <algorithm>
#include <unordered_map>

namespace omni::model {
namespace {

double probability_of(std::span<const TokenProb> d, TokenId id) {
  for (const TokenProb& t : d)
    if (t.id == id) return t.p;
  return 0.0;
}

}  // namespace

TokenId draw_from(std::span<const TokenProb> d, double u) {
  double total = 0.0;
  for (const TokenProb& t : d) total += t.p;
  const double target = u * total;
  double cumulative = 0.0;
  for (const TokenProb& t : d) {
    cumulative += t.p;
    if (target < cumulative) return t.id;
  }
  return d.back().id;  // u * total rounded up to the sum
}

SpeculativeVerdict speculative_verdict(std::span<const TokenProb> p, std::span<const TokenProb> q, TokenId x,
                                       double u_accept, double u_residual) {
  const double px = probability_of(p, x);
  const double qx = probability_of(q, x);
  // q(x) = 0 cannot happen for a token drawn from q; treat it as a certain rejection.
  if (qx > 0.0 && u_accept * qx < px) return {true, x};
  std::unordered_map<TokenId, double> qs;
  for (const TokenProb& t : q) qs[t.id] = t.p;
  std::vector<TokenProb> residual;
  for (const TokenProb& t : p) {
    auto it = qs.find(t.id);
    const double r = t.p - (it == qs.end() ? 0.0 : it->second);
    if (r > 0.0) residual.push_back({t.id, r});
  }
  // p <= q everywhere means p = q (both sum to 1), where rejection has probability 0; rounding
  // can still get here: p itself is then the residual's limit.
  if (residual.empty()) return {false, draw_from(p, u_residual)};
  return {false, draw_from(residual, u_residual)};
}

}  // namespace omni::model
