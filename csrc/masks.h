// Attribution masks: normalisation, masked-batch construction and
// score-weighted contribution accumulation (SISE eq. 10-12).
#pragma once

#include <cstdint>

#include "resample.h"

namespace sise {

enum class Layout : int32_t { NCHW = 0, NHWC = 1 };

struct ImageShape {
  int32_t channels;
  int32_t height;
  int32_t width;
  Layout layout;
};

namespace cpu {
// In place: each map of `maps` becomes (m - min) / (max - min). A constant map
// (max == min, or non-finite values) is set to zero and flagged 0 in `informative`.
void minmax_normalize(float* maps, MapStack shape, uint8_t* informative);

// out[b] = image * masks[b], broadcast over channels; `out` is the caller's
// buffer of count * C * H * W floats in the image's layout.
void build_masked_batch(const float* image, ImageShape image_shape, const float* masks, int64_t count,
                        float* out);

// acc[H, W] += sum_b scores[b] * masks[b] / sum(masks[b]) (eq. 10 with C_m of eq. 11).
// Masks whose sum is zero add nothing.
void accumulate_contributions(const float* masks, MapStack shape, const float* scores, double* acc);
}  // namespace cpu

namespace cuda {
void minmax_normalize(float* maps, MapStack shape, uint8_t* informative);
void build_masked_batch(const float* image, ImageShape image_shape, const float* masks, int64_t count,
                        float* out);
void accumulate_contributions(const float* masks, MapStack shape, const float* scores, double* acc);
}  // namespace cuda

}  // namespace sise
