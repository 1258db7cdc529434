// Otsu's threshold and the SISE fusion cascade (SISE Fig. 5).
#pragma once

#include <cstdint>

#include "resample.h"

namespace sise {

constexpr int32_t kOtsuBins = 256;

enum class Gate : int32_t { Hard = 0, Soft = 1 };

// Threshold from a histogram over [lo, hi] split into `bins` equal bins: the centre
// of the bin that maximises the between-class variance (skimage.filters.threshold_otsu).
float otsu_from_histogram(const int64_t* counts, int32_t bins, float lo, float hi);

namespace cpu {
// Otsu threshold of n values; a constant input returns that value.
float otsu_threshold(const float* values, int64_t n, int32_t bins);

// maps[L, H, W], shallowest block first. Each map is min-max normalised, then
// F = V_0; F = (F + V_l) * gate(V_l > otsu(V_l)) for l = 1..L-1; out = normalise(F).
// Constant block maps carry nothing and are left out of the cascade.
// `work` holds L * H * W floats of scratch.
void fuse_cascade(const float* maps, MapStack shape, Gate gate, float sharpness, float* work, float* out);
}  // namespace cpu

namespace cuda {
float otsu_threshold(const float* values, int64_t n, int32_t bins);
void fuse_cascade(const float* maps, MapStack shape, Gate gate, float sharpness, float* work, float* out);
}  // namespace cuda

}  // namespace sise
