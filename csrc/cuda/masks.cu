#include <cfloat>

#include "../device_math.h"
#include "../masks.h"
#include "cuda_helpers.h"

namespace sise::cuda {
namespace {

// One block per map: min, max and finiteness by shared-memory reduction, then rescale.
__global__ void minmax_kernel(float* maps, int64_t plane, uint8_t* informative) {
  __shared__ float lo_s[kThreads];
  __shared__ float hi_s[kThreads];
  float* map = maps + static_cast<int64_t>(blockIdx.x) * plane;
  float lo = FLT_MAX, hi = -FLT_MAX;
  int finite = 1;
  for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) {
    const float v = map[i];
    finite &= isfinite(v) ? 1 : 0;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  const bool all_finite = __syncthreads_and(finite) != 0;
  lo_s[threadIdx.x] = lo;
  hi_s[threadIdx.x] = hi;
  reduce_min_max(lo_s, hi_s);
  const bool useful = all_finite && hi_s[0] > lo_s[0];
  const float inv_range = useful ? 1.0f / (hi_s[0] - lo_s[0]) : 0.0f;
  for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) {
    map[i] = useful ? rescale_unit(map[i], lo_s[0], inv_range) : 0.0f;
  }
  if (threadIdx.x == 0) informative[blockIdx.x] = useful ? 1 : 0;
}

__global__ void masked_batch_kernel(const float* image, ImageShape s, const float* masks, int64_t count,
                                    float* out) {
  const int64_t plane = static_cast<int64_t>(s.height) * s.width;
  const int64_t item = plane * s.channels;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= count * item) return;
  const int64_t b = index / item;
  const int64_t within = index % item;
  const int64_t pixel = s.layout == Layout::NCHW ? within % plane : within / s.channels;
  out[index] = image[within] * masks[b * plane + pixel];
}

// One block per mask: weight[b] = score[b] / sum(mask[b]).
__global__ void mask_weight_kernel(const float* masks, int64_t plane, const float* scores, double* weight) {
  __shared__ double sum_s[kThreads];
  const float* mask = masks + static_cast<int64_t>(blockIdx.x) * plane;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) sum += mask[i];
  sum_s[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) sum_s[threadIdx.x] += sum_s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) weight[blockIdx.x] = sum_s[0] > 0.0 ? scores[blockIdx.x] / sum_s[0] : 0.0;
}

__global__ void accumulate_kernel(const float* masks, MapStack shape, const double* weight, double* acc) {
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= plane) return;
  double sum = 0.0;
  for (int64_t b = 0; b < shape.count; ++b) sum += weight[b] * masks[b * plane + i];
  acc[i] += sum;
}

}  // namespace

void minmax_normalize(float* maps, MapStack shape, uint8_t* informative) {
  if (shape.count == 0) return;
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  minmax_kernel<<<static_cast<unsigned int>(shape.count), kThreads>>>(maps, plane, informative);
  check_launch("minmax_kernel");
}

void build_masked_batch(const float* image, ImageShape image_shape, const float* masks, int64_t count,
                        float* out) {
  const int64_t total = count * image_shape.channels * static_cast<int64_t>(image_shape.height) * image_shape.width;
  if (total == 0) return;
  masked_batch_kernel<<<blocks_for(total), kThreads>>>(image, image_shape, masks, count, out);
  check_launch("masked_batch_kernel");
}

void accumulate_contributions(const float* masks, MapStack shape, const float* scores, double* acc) {
  if (shape.count == 0) return;
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  double* weight = nullptr;
  check(cudaMalloc(&weight, sizeof(double) * shape.count), "cudaMalloc weights");
  mask_weight_kernel<<<static_cast<unsigned int>(shape.count), kThreads>>>(masks, plane, scores, weight);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) {
    accumulate_kernel<<<blocks_for(plane), kThreads>>>(masks, shape, weight, acc);
    status = cudaGetLastError();
  }
  cudaFree(weight);
  check(status, "accumulate_contributions kernels");
}

}  // namespace sise::cuda
