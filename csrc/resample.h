// Bilinear resampling of a stack of maps, half-pixel centres.
#pragma once

#include <cstdint>

namespace sise {

struct MapStack {
  int64_t count;
  int32_t height;
  int32_t width;
};

namespace cpu {
// dst[n, H, W] = bilinear(src[n, h, w]); matches cv2.resize(INTER_LINEAR) on float32.
void upsample_bilinear(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w);
}  // namespace cpu

namespace cuda {
void upsample_bilinear(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w);
}  // namespace cuda

}  // namespace sise
