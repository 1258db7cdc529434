#include "../device_math.h"
#include "../resample.h"
#include "cuda_helpers.h"

namespace sise::cuda {
namespace {

__global__ void upsample_kernel(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w) {
  const int64_t out_plane = static_cast<int64_t>(out_h) * out_w;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= in.count * out_plane) return;
  const int64_t n = index / out_plane;
  const int32_t y = static_cast<int32_t>((index % out_plane) / out_w);
  const int32_t x = static_cast<int32_t>(index % out_w);
  const float* plane = src + n * static_cast<int64_t>(in.height) * in.width;
  dst[index] = bilinear_at(plane, in.width, half_pixel_tap(y, in.height, out_h), half_pixel_tap(x, in.width, out_w));
}

}  // namespace

void upsample_bilinear(const float* src, MapStack in, float* dst, int32_t out_h, int32_t out_w) {
  const int64_t total = in.count * static_cast<int64_t>(out_h) * out_w;
  if (total == 0) return;
  upsample_kernel<<<blocks_for(total), kThreads>>>(src, in, dst, out_h, out_w);
  check_launch("upsample_kernel");
}

}  // namespace sise::cuda
