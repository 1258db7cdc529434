#include <vector>

#include "../device_math.h"
#include "../resample.h"

namespace sise::cpu {

namespace {
constexpr int64_t kParallelOutputs = int64_t{1} << 18;  // outputs below which one thread resizes
}  // namespace

void upsample_bilinear(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w) {
  std::vector<LinearTap> rows(out_h);
  std::vector<LinearTap> cols(out_w);
  for (int32_t y = 0; y < out_h; ++y) rows[y] = half_pixel_tap(y, in.height, out_h);
  for (int32_t x = 0; x < out_w; ++x) cols[x] = half_pixel_tap(x, in.width, out_w);
  const int64_t in_plane = static_cast<int64_t>(in.height) * in.width;
  const int64_t out_plane = static_cast<int64_t>(out_h) * out_w;
  // One row of one map per iteration; small work (a map resized to a photo) stays on this
  // thread: waking the team costs more than it saves on a busy machine (docs/design.md section 10).
#pragma omp parallel for collapse(2) schedule(static) if(in.count * out_plane >= kParallelOutputs)
  for (int64_t n = 0; n < in.count; ++n) {
    for (int32_t y = 0; y < out_h; ++y) {
      const float* plane = src + n * in_plane;
      float* out = dst + n * out_plane + static_cast<int64_t>(y) * out_w;
      for (int32_t x = 0; x < out_w; ++x) out[x] = bilinear_at(plane, in.width, rows[y], cols[x]);
    }
  }
}

}  // namespace sise::cpu
