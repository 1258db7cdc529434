#include <cfloat>
#include <stdexcept>
#include <vector>

#include "../device_math.h"
#include "../masks.h"
#include "../otsu.h"
#include "cuda_helpers.h"

namespace sise::cuda {
namespace {

__global__ void range_kernel(const float* values, int64_t n, float* range, int* finite) {
  __shared__ float lo_s[kThreads];
  __shared__ float hi_s[kThreads];
  float lo = FLT_MAX, hi = -FLT_MAX;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = values[i];
    if (!isfinite(v)) *finite = 0;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  lo_s[threadIdx.x] = lo;
  hi_s[threadIdx.x] = hi;
  reduce_min_max(lo_s, hi_s);
  if (threadIdx.x == 0) {
    // CUDA has no float atomicMin/atomicMax: compare-and-swap on the bit pattern.
    unsigned int* lo_bits = reinterpret_cast<unsigned int*>(&range[0]);
    unsigned int* hi_bits = reinterpret_cast<unsigned int*>(&range[1]);
    unsigned int old = *lo_bits, assumed;
    do {
      assumed = old;
      old = atomicCAS(lo_bits, assumed, __float_as_uint(fminf(lo_s[0], __uint_as_float(assumed))));
    } while (assumed != old);
    old = *hi_bits;
    do {
      assumed = old;
      old = atomicCAS(hi_bits, assumed, __float_as_uint(fmaxf(hi_s[0], __uint_as_float(assumed))));
    } while (assumed != old);
  }
}

__global__ void histogram_kernel(const float* values, int64_t n, float lo, float hi, int32_t bins,
                                 unsigned long long* counts) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    atomicAdd(&counts[histogram_bin(values[i], lo, hi, bins)], 1ULL);
  }
}

__global__ void cascade_step_kernel(float* fused, const float* deeper, int64_t plane, float threshold, Gate gate,
                                     float sharpness) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= plane) return;
  const float keep = gate == Gate::Hard ? (deeper[i] > threshold ? 1.0f : 0.0f)
                                        : soft_gate(deeper[i], threshold, sharpness);
  fused[i] = (fused[i] + deeper[i]) * keep;
}

constexpr unsigned int kReduceBlocks = 128;

}  // namespace

float otsu_threshold(const float* values, int64_t n, int32_t bins) {
  if (n <= 0) throw std::invalid_argument("otsu_threshold: expected at least one value, got none");
  if (bins < 2) throw std::invalid_argument("otsu_threshold: expected at least 2 bins");
  float* range = nullptr;
  int* finite = nullptr;
  unsigned long long* counts = nullptr;
  check(cudaMalloc(&range, 2 * sizeof(float)), "cudaMalloc range");
  check(cudaMalloc(&finite, sizeof(int)), "cudaMalloc finite");
  check(cudaMalloc(&counts, bins * sizeof(unsigned long long)), "cudaMalloc histogram");
  const float init[2] = {FLT_MAX, -FLT_MAX};
  const int yes = 1;
  float host_range[2];
  int host_finite = 0;
  std::vector<unsigned long long> host_counts(bins);
  cudaMemcpy(range, init, sizeof(init), cudaMemcpyHostToDevice);
  cudaMemcpy(finite, &yes, sizeof(int), cudaMemcpyHostToDevice);
  cudaMemset(counts, 0, bins * sizeof(unsigned long long));
  range_kernel<<<kReduceBlocks, kThreads>>>(values, n, range, finite);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) status = cudaMemcpy(host_range, range, sizeof(host_range), cudaMemcpyDeviceToHost);
  if (status == cudaSuccess) status = cudaMemcpy(&host_finite, finite, sizeof(int), cudaMemcpyDeviceToHost);
  const bool spread = host_finite && host_range[1] > host_range[0];
  if (status == cudaSuccess && spread) {
    histogram_kernel<<<kReduceBlocks, kThreads>>>(values, n, host_range[0], host_range[1], bins, counts);
    status = cudaGetLastError();
    if (status == cudaSuccess) {
      status = cudaMemcpy(host_counts.data(), counts, bins * sizeof(unsigned long long), cudaMemcpyDeviceToHost);
    }
  }
  cudaFree(range);
  cudaFree(finite);
  cudaFree(counts);
  check(status, "otsu_threshold kernels");
  if (!host_finite) throw std::invalid_argument("otsu_threshold: values must be finite");
  if (!spread) return host_range[0];
  std::vector<int64_t> as_signed(host_counts.begin(), host_counts.end());
  return otsu_from_histogram(as_signed.data(), bins, host_range[0], host_range[1]);
}

void fuse_cascade(const float* maps, MapStack shape, Gate gate, float sharpness, float* work, float* out) {
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  check(cudaMemcpy(work, maps, sizeof(float) * shape.count * plane, cudaMemcpyDeviceToDevice), "copy maps");
  uint8_t* informative = nullptr;
  check(cudaMalloc(&informative, shape.count), "cudaMalloc informative");
  std::vector<uint8_t> host_informative(shape.count);
  minmax_normalize(work, shape, informative);
  cudaError_t status = cudaMemcpy(host_informative.data(), informative, shape.count, cudaMemcpyDeviceToHost);
  cudaFree(informative);
  check(status, "copy informative flags");
  check(cudaMemset(out, 0, sizeof(float) * plane), "cudaMemset fused");
  bool started = false;
  for (int64_t l = 0; l < shape.count; ++l) {
    if (!host_informative[l]) continue;
    const float* deeper = work + l * plane;
    if (!started) {
      check(cudaMemcpy(out, deeper, sizeof(float) * plane, cudaMemcpyDeviceToDevice), "copy first map");
      started = true;
      continue;
    }
    const float threshold = otsu_threshold(deeper, plane, kOtsuBins);
    cascade_step_kernel<<<blocks_for(plane), kThreads>>>(out, deeper, plane, threshold, gate, sharpness);
    check_launch("cascade_step_kernel");
  }
  uint8_t* unused = nullptr;
  check(cudaMalloc(&unused, 1), "cudaMalloc flag");
  minmax_normalize(out, MapStack{1, shape.height, shape.width}, unused);
  status = cudaDeviceSynchronize();
  cudaFree(unused);
  check(status, "fuse_cascade");
}

}  // namespace sise::cuda
