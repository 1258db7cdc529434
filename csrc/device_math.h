// Per-element maths shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SISE_HD __host__ __device__
#else
#define SISE_HD
#endif

namespace sise {

// Source coordinate of a destination pixel under half-pixel centres
// (cv2.resize INTER_LINEAR, torch interpolate align_corners=False).
struct LinearTap {
  int32_t lo;
  int32_t hi;
  float frac;
};

SISE_HD inline LinearTap half_pixel_tap(int32_t dst, int32_t src_size, int32_t dst_size) {
  const float scale = static_cast<float>(src_size) / static_cast<float>(dst_size);
  float src = (static_cast<float>(dst) + 0.5f) * scale - 0.5f;
  if (src < 0.0f) src = 0.0f;
  int32_t lo = static_cast<int32_t>(src);
  float frac = src - static_cast<float>(lo);
  if (lo >= src_size - 1) {
    lo = src_size - 1;
    frac = 0.0f;
  }
  const int32_t hi = lo + 1 < src_size ? lo + 1 : src_size - 1;
  return {lo, hi, frac};
}

SISE_HD inline float bilinear_at(const float* src, int32_t src_w, LinearTap ty, LinearTap tx) {
  const float top = src[ty.lo * src_w + tx.lo] * (1.0f - tx.frac) + src[ty.lo * src_w + tx.hi] * tx.frac;
  const float bottom = src[ty.hi * src_w + tx.lo] * (1.0f - tx.frac) + src[ty.hi * src_w + tx.hi] * tx.frac;
  return top * (1.0f - ty.frac) + bottom * ty.frac;
}

SISE_HD inline float rescale_unit(float value, float lo, float inv_range) {
  return (value - lo) * inv_range;
}

// Histogram bin of `value` in [lo, hi] split into `bins`, numpy.histogram's rule
// (the last edge is inclusive).
SISE_HD inline int32_t histogram_bin(float value, float lo, float hi, int32_t bins) {
  const double pos = (static_cast<double>(value) - lo) / (static_cast<double>(hi) - lo) * bins;
  int32_t bin = static_cast<int32_t>(pos);
  if (bin < 0) bin = 0;
  if (bin >= bins) bin = bins - 1;
  return bin;
}

SISE_HD inline float soft_gate(float value, float threshold, float sharpness) {
  return 1.0f / (1.0f + expf(-sharpness * (value - threshold)));
}

}  // namespace sise
