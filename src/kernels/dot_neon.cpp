// NEON kernels for every AArch64 CPU (ARMv8-A Advanced SIMD): integer dots by widening multiplies.
// The kernels themselves are in dot_lanes_neon.h.
#include "kernels/dot_lanes_neon.h"

namespace omni::kernels {

const KernelTable& neon_kernels() { return neon::table(); }

}  // namespace omni::kernels
