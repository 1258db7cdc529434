#include "buffer.h"

#include <cstring>
#include <new>
#include <stdexcept>

#ifdef SISE_WITH_CUDA
#include "device_memory.h"
#endif

namespace sise {
namespace {

constexpr std::align_val_t kHostAlignment{64};

#ifndef SISE_WITH_CUDA
[[noreturn]] void no_cuda() { throw std::logic_error("CUDA buffer in a build without CUDA"); }
#endif

}  // namespace

Buffer::Buffer(std::size_t bytes, Device device) : bytes_(bytes), device_(device), data_(nullptr) {
  if (device_ == Device::CPU) {
    data_ = ::operator new(bytes_ == 0 ? 1 : bytes_, kHostAlignment);
    return;
  }
#ifdef SISE_WITH_CUDA
  data_ = cuda::allocate(bytes_);
#else
  no_cuda();
#endif
}

Buffer::~Buffer() {
  if (device_ == Device::CPU) {
    ::operator delete(data_, kHostAlignment);
    return;
  }
#ifdef SISE_WITH_CUDA
  cuda::release(data_);
#endif
}

void Buffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_) throw std::invalid_argument("upload larger than the buffer");
  if (device_ == Device::CPU) {
    std::memcpy(data_, host, bytes);
    return;
  }
#ifdef SISE_WITH_CUDA
  cuda::copy_to_device(data_, host, bytes);
#else
  no_cuda();
#endif
}

void Buffer::download(void* host, std::size_t bytes) const {
  if (bytes > bytes_) throw std::invalid_argument("download larger than the buffer");
  if (device_ == Device::CPU) {
    std::memcpy(host, data_, bytes);
    return;
  }
#ifdef SISE_WITH_CUDA
  cuda::copy_to_host(host, data_, bytes);
#else
  no_cuda();
#endif
}

void Buffer::download_columns(float* host, int64_t rows, int64_t row_length, const std::vector<int64_t>& columns) const {
  if (static_cast<std::size_t>(rows * row_length) * sizeof(float) > bytes_) {
    throw std::invalid_argument("download_columns: the matrix is larger than the buffer");
  }
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (columns[c] < 0 || columns[c] >= row_length) throw std::invalid_argument("download_columns: column out of range");
  }
  const float* matrix = as<float>();
  for (std::size_t c = 0; c < columns.size(); ++c) {
    float* dst = host + static_cast<int64_t>(c) * rows;
    if (device_ == Device::CPU) {
      for (int64_t r = 0; r < rows; ++r) dst[r] = matrix[r * row_length + columns[c]];
      continue;
    }
#ifdef SISE_WITH_CUDA
    cuda::copy_strided_to_host(dst, matrix + columns[c], row_length * sizeof(float), sizeof(float), rows);
#else
    no_cuda();
#endif
  }
}

void Buffer::zero() {
  if (device_ == Device::CPU) {
    std::memset(data_, 0, bytes_);
    return;
  }
#ifdef SISE_WITH_CUDA
  cuda::fill_zero(data_, bytes_);
#else
  no_cuda();
#endif
}

}  // namespace sise
