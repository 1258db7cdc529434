// Device memory helpers exposed to the binding layer, which is compiled without nvcc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sise::cuda {

int device_count();
std::string device_name(int device);
void* allocate(std::size_t bytes);
void release(void* ptr) noexcept;
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
// rows elements of element_bytes each, src_pitch bytes apart on the device, packed on the host.
void copy_strided_to_host(void* dst, const void* src, std::size_t src_pitch, std::size_t element_bytes,
                          int64_t rows);
void fill_zero(void* ptr, std::size_t bytes);
void synchronize();

}  // namespace sise::cuda
