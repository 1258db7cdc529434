// Launch checking and grid sizing for the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sise::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

inline void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

// Tree reduction of per-thread minima and maxima held in shared memory; the block's
// result lands in lo_s[0] and hi_s[0]. Needs blockDim.x == kThreads.
__device__ inline void reduce_min_max(float* lo_s, float* hi_s) {
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      lo_s[threadIdx.x] = fminf(lo_s[threadIdx.x], lo_s[threadIdx.x + stride]);
      hi_s[threadIdx.x] = fmaxf(hi_s[threadIdx.x], hi_s[threadIdx.x + stride]);
    }
    __syncthreads();
  }
}

}  // namespace sise::cuda
