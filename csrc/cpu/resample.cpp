#include <vector>

#include "../device_math.h"
#include "../resample.h"

namespace sise::cpu {

void upsample_bilinear(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w) {
  std::vector<LinearTap> rows(out_h);
  std::vector<LinearTap> cols(out_w);
  for (int32_t y = 0; y < out_h; ++y) rows[y] = half_pixel_tap(y, in.height, out_h);
  for (int32_t x = 0; x < out_w; ++x) cols[x] = half_pixel_tap(x, in.width, out_w);
  const int64_t in_plane = static_cast<int64_t>(in.height) * in.width;
  const int64_t out_plane = static_cast<int64_t>(out_h) * out_w;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < in.count; ++n) {
    const float* plane = src + n * in_plane;
    float* out = dst + n * out_plane;
    for (int32_t y = 0; y < out_h; ++y) {
      for (int32_t x = 0; x < out_w; ++x) out[y * out_w + x] = bilinear_at(plane, in.width, rows[y], cols[x]);
    }
  }
}

}  // namespace sise::cpu
