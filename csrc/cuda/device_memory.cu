#include "../device_memory.h"
#include "cuda_helpers.h"

namespace sise::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

void* allocate(std::size_t bytes) {
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes), "cudaMalloc");
  return ptr;
}

void release(void* ptr) noexcept { cudaFree(ptr); }

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

void copy_strided_to_host(void* dst, const void* src, std::size_t src_pitch, std::size_t element_bytes,
                          int64_t rows) {
  check(cudaMemcpy2D(dst, element_bytes, src, src_pitch, element_bytes, static_cast<std::size_t>(rows),
                     cudaMemcpyDeviceToHost), "cudaMemcpy2D to host");
}

void fill_zero(void* ptr, std::size_t bytes) { check(cudaMemset(ptr, 0, bytes), "cudaMemset"); }

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace sise::cuda
