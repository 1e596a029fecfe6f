#include "kernels/portable_math.h"

#include <cmath>

namespace omni::kernels {
namespace {

// e^y - 1 for 0 <= y <= 20, in double. Small y: the Taylor series itself (no cancellation).
// Larger y: e^y = 2^k e^r with |r| <= ln(2)/2, e^r by its Taylor series (the 18th term is below
// 2^-60 there), 2^k applied exactly by ldexp.
double expm1_nonnegative(double y) {
  constexpr double kLn2Hi = 0x1.62e42fefa3800p-1;   // ln 2 split so that k * kLn2Hi is exact
  constexpr double kLn2Lo = 0x1.ef35793c76730p-45;
  constexpr double kInvLn2 = 0x1.71547652b82fep0;
  auto series_minus_one = [](double r) {  // e^r - 1 = r (1 + r/2 (1 + r/3 (1 + ...)))
    double s = 1.0;
    for (int n = 18; n >= 2; --n) s = 1.0 + r / n * s;
    return r * s;
  };
  if (y < 0.34657359027997264) return series_minus_one(y);
  const double k = std::nearbyint(y * kInvLn2);
  const double r = (y - k * kLn2Hi) - k * kLn2Lo;
  return std::ldexp(1.0 + series_minus_one(r), static_cast<int>(k)) - 1.0;
}

}  // namespace

float tanh_portable(float x) {
  if (std::isnan(x)) return x;
  const double t = std::fabs(static_cast<double>(x));
  // Past 9.1, tanh is within 2^-26 of 1 and rounds to 1.0f.
  if (t > 9.1) return std::copysign(1.0f, x);
  const double e = expm1_nonnegative(2.0 * t);  // tanh t = (e^2t - 1) / (e^2t + 1)
  return static_cast<float>(std::copysign(e / (e + 2.0), static_cast<double>(x)));
}

}  // namespace omni::kernels
