// Memory that both the compiled kernels and onnxruntime (through IO binding) can
// address: host memory, or CUDA device memory when built with CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sise {

enum class Device { CPU, CUDA };

class Buffer {
 public:
  Buffer(std::size_t bytes, Device device);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Device device() const { return device_; }
  std::size_t bytes() const { return bytes_; }
  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

  // Copies between host memory and the first `bytes` of this buffer.
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  // host[c * rows + r] = this[r * row_length + columns[c]] for float rows: the few
  // columns of a (rows, row_length) matrix that are wanted on the host.
  void download_columns(float* host, int64_t rows, int64_t row_length, const std::vector<int64_t>& columns) const;
  void zero();

 private:
  std::size_t bytes_;
  Device device_;
  void* data_;
};

}  // namespace sise
