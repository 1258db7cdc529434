// Python binding of onnx_sise._core: checks shapes and dtypes, then calls the
// CPU kernels, or the CUDA kernels through a device copy when device="cuda".
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <cstring>
#include <vector>
#include <stdexcept>
#include <string>

#include "buffer.h"
#include "masks.h"
#include "otsu.h"
#include "resample.h"
#include "threads.h"

#ifdef SISE_WITH_CUDA
#include "device_memory.h"
#endif

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style>;

using sise::Buffer;
using sise::Device;

constexpr bool kCompiledWithCuda =
#ifdef SISE_WITH_CUDA
    true;
#else
    false;
#endif

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") {
    if (!kCompiledWithCuda) throw std::invalid_argument("device='cuda': onnx_sise._core was built without CUDA");
#ifdef SISE_WITH_CUDA
    if (sise::cuda::device_count() == 0) throw std::invalid_argument("device='cuda': no CUDA device is visible");
#endif
    return Device::CUDA;
  }
  throw std::invalid_argument("device must be 'cpu' or 'cuda', got '" + name + "'");
}

std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) text += (i ? ", " : "") + std::to_string(a.shape(i));
  return text + ")";
}

void require_ndim(const py::array& a, py::ssize_t ndim, const char* name, const char* expected) {
  if (a.ndim() != ndim) {
    throw std::invalid_argument(std::string(name) + ": expected shape " + expected + ", got " + shape_text(a));
  }
}

sise::MapStack stack_of(const py::array& a) {
  return {static_cast<int64_t>(a.shape(0)), static_cast<int32_t>(a.shape(1)), static_cast<int32_t>(a.shape(2))};
}

#ifdef SISE_WITH_CUDA
// Device copy of a host array, released on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes), ptr_(sise::cuda::allocate(bytes)) {}
  DeviceBuffer(const void* host, std::size_t bytes) : DeviceBuffer(bytes) { sise::cuda::copy_to_device(ptr_, host, bytes); }
  ~DeviceBuffer() { sise::cuda::release(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* get() const { return static_cast<T*>(ptr_); }
  void to_host(void* host) const { sise::cuda::copy_to_host(host, ptr_, bytes_); }

 private:
  std::size_t bytes_;
  void* ptr_;
};
#endif

#ifndef SISE_WITH_CUDA
[[noreturn]] void no_cuda() { throw std::logic_error("CUDA path reached in a build without CUDA"); }
#endif

py::array_t<float> upsample_bilinear(const FloatArray& maps, int32_t height, int32_t width, const std::string& device) {
  require_ndim(maps, 3, "maps", "(N, h, w)");
  if (height <= 0 || width <= 0) throw std::invalid_argument("height and width must be positive");
  if (maps.shape(1) == 0 || maps.shape(2) == 0) throw std::invalid_argument("maps: spatial size must be positive");
  const sise::MapStack in = stack_of(maps);
  py::array_t<float> out({static_cast<py::ssize_t>(in.count), static_cast<py::ssize_t>(height), static_cast<py::ssize_t>(width)});
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::upsample_bilinear(maps.data(), in, out.mutable_data(), height, width);
    return out;
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer src(maps.data(), maps.nbytes());
  DeviceBuffer dst(out.nbytes());
  sise::cuda::upsample_bilinear(src.get<float>(), in, dst.get<float>(), height, width);
  dst.to_host(out.mutable_data());
  return out;
#else
  no_cuda();
#endif
}

py::array_t<uint8_t> minmax_normalize(py::array_t<float, py::array::c_style> maps, const std::string& device) {
  require_ndim(maps, 3, "maps", "(N, H, W)");
  if (!maps.writeable()) throw std::invalid_argument("maps: must be writeable (normalised in place)");
  const sise::MapStack shape = stack_of(maps);
  py::array_t<uint8_t> informative(static_cast<py::ssize_t>(shape.count));
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::minmax_normalize(maps.mutable_data(), shape, informative.mutable_data());
    return informative;
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer data(maps.data(), maps.nbytes());
  DeviceBuffer flags(informative.nbytes());
  sise::cuda::minmax_normalize(data.get<float>(), shape, flags.get<uint8_t>());
  data.to_host(maps.mutable_data());
  flags.to_host(informative.mutable_data());
  return informative;
#else
  no_cuda();
#endif
}

void build_masked_batch(const FloatArray& image, const FloatArray& masks, py::array_t<float, py::array::c_style> out,
                        const std::string& layout, const std::string& device) {
  require_ndim(image, 3, "image", "(C, H, W) or (H, W, C)");
  require_ndim(masks, 3, "masks", "(B, H, W)");
  sise::ImageShape s{};
  if (layout == "NCHW") {
    s = {static_cast<int32_t>(image.shape(0)), static_cast<int32_t>(image.shape(1)), static_cast<int32_t>(image.shape(2)), sise::Layout::NCHW};
  } else if (layout == "NHWC") {
    s = {static_cast<int32_t>(image.shape(2)), static_cast<int32_t>(image.shape(0)), static_cast<int32_t>(image.shape(1)), sise::Layout::NHWC};
  } else {
    throw std::invalid_argument("layout must be 'NCHW' or 'NHWC', got '" + layout + "'");
  }
  if (masks.shape(1) != s.height || masks.shape(2) != s.width) {
    throw std::invalid_argument("masks: expected spatial size of the image (" + std::to_string(s.height) + ", " +
                                std::to_string(s.width) + "), got " + shape_text(masks));
  }
  const int64_t count = masks.shape(0);
  const int64_t item = static_cast<int64_t>(s.channels) * s.height * s.width;
  if (!out.writeable() || out.ndim() != 4 || out.shape(0) < count || out.size() / std::max<int64_t>(out.shape(0), 1) != item) {
    throw std::invalid_argument("out: expected a writeable float32 buffer of shape (>=" + std::to_string(count) +
                                ", ...) holding " + std::to_string(item) + " values per image, got " + shape_text(out));
  }
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::build_masked_batch(image.data(), s, masks.data(), count, out.mutable_data());
    return;
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer d_image(image.data(), image.nbytes());
  DeviceBuffer d_masks(masks.data(), masks.nbytes());
  DeviceBuffer d_out(static_cast<std::size_t>(count * item) * sizeof(float));
  sise::cuda::build_masked_batch(d_image.get<float>(), s, d_masks.get<float>(), count, d_out.get<float>());
  d_out.to_host(out.mutable_data());
#else
  no_cuda();
#endif
}

void accumulate_contributions(const FloatArray& masks, const FloatArray& scores, DoubleArray acc, const std::string& device) {
  require_ndim(masks, 3, "masks", "(B, H, W)");
  require_ndim(scores, 1, "scores", "(B,)");
  if (scores.shape(0) != masks.shape(0)) {
    throw std::invalid_argument("scores: expected one score per mask (" + std::to_string(masks.shape(0)) + "), got " + shape_text(scores));
  }
  if (!acc.writeable() || acc.ndim() != 2 || acc.shape(0) != masks.shape(1) || acc.shape(1) != masks.shape(2)) {
    throw std::invalid_argument("acc: expected a writeable float64 array of shape (" + std::to_string(masks.shape(1)) + ", " +
                                std::to_string(masks.shape(2)) + "), got " + shape_text(acc));
  }
  const sise::MapStack shape = stack_of(masks);
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::accumulate_contributions(masks.data(), shape, scores.data(), acc.mutable_data());
    return;
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer d_masks(masks.data(), masks.nbytes());
  DeviceBuffer d_scores(scores.data(), scores.nbytes());
  DeviceBuffer d_acc(acc.data(), acc.nbytes());
  sise::cuda::accumulate_contributions(d_masks.get<float>(), shape, d_scores.get<float>(), d_acc.get<double>());
  d_acc.to_host(acc.mutable_data());
#else
  no_cuda();
#endif
}

float otsu_threshold(const FloatArray& values, int32_t bins, const std::string& device) {
  if (values.size() == 0) throw std::invalid_argument("values: expected at least one value, got an empty array");
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    return sise::cpu::otsu_threshold(values.data(), values.size(), bins);
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer d_values(values.data(), values.nbytes());
  return sise::cuda::otsu_threshold(d_values.get<float>(), values.size(), bins);
#else
  no_cuda();
#endif
}

py::array_t<float> fuse_cascade(const FloatArray& maps, const std::string& gate, float sharpness, const std::string& device) {
  require_ndim(maps, 3, "maps", "(L, H, W)");
  if (maps.shape(0) == 0) throw std::invalid_argument("maps: expected at least one block map");
  sise::Gate g{};
  if (gate == "hard") g = sise::Gate::Hard;
  else if (gate == "soft") g = sise::Gate::Soft;
  else throw std::invalid_argument("gate must be 'hard' or 'soft', got '" + gate + "'");
  const sise::MapStack shape = stack_of(maps);
  py::array_t<float> out({static_cast<py::ssize_t>(shape.height), static_cast<py::ssize_t>(shape.width)});
  if (parse_device(device) == Device::CPU) {
    py::gil_scoped_release release;
    std::vector<float> work(static_cast<std::size_t>(maps.size()));
    sise::cpu::fuse_cascade(maps.data(), shape, g, sharpness, work.data(), out.mutable_data());
    return out;
  }
#ifdef SISE_WITH_CUDA
  DeviceBuffer d_maps(maps.data(), maps.nbytes());
  DeviceBuffer d_work(maps.nbytes());
  DeviceBuffer d_out(out.nbytes());
  sise::cuda::fuse_cascade(d_maps.get<float>(), shape, g, sharpness, d_work.get<float>(), d_out.get<float>());
  d_out.to_host(out.mutable_data());
  return out;
#else
  no_cuda();
#endif
}

// Kernels over Buffers: the masked-pass pipeline whose arrays stay where onnxruntime
// reads and writes them (IO binding), on the host or on the GPU.

void require_same_device(std::initializer_list<const Buffer*> buffers) {
  const Device device = (*buffers.begin())->device();
  for (const Buffer* b : buffers) {
    if (b->device() != device) throw std::invalid_argument("buffers must all be on the same device");
  }
}

void require_bytes(const Buffer& b, int64_t bytes, const char* name) {
  if (bytes < 0 || static_cast<std::size_t>(bytes) > b.bytes()) {
    throw std::invalid_argument(std::string(name) + ": buffer of " + std::to_string(b.bytes()) + " bytes, " +
                                std::to_string(bytes) + " needed");
  }
}

// masks[n] = min-max normalised bilinear upsampling of features[n] (SISE eq. 7);
// flags[n] = 0 where the mask is constant.
void masks_from_features(const Buffer& features, int64_t count, int32_t h, int32_t w, int32_t height, int32_t width,
                         Buffer& masks, Buffer& flags) {
  require_same_device({&features, &masks, &flags});
  if (count < 0 || h <= 0 || w <= 0 || height <= 0 || width <= 0) throw std::invalid_argument("sizes must be positive");
  require_bytes(features, count * h * w * 4, "features");
  require_bytes(masks, count * height * width * 4, "masks");
  require_bytes(flags, count, "flags");
  const sise::MapStack in{count, h, w};
  const sise::MapStack out{count, height, width};
  if (features.device() == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::upsample_bilinear(features.as<float>(), in, masks.as<float>(), height, width);
    sise::cpu::minmax_normalize(masks.as<float>(), out, flags.as<uint8_t>());
    return;
  }
#ifdef SISE_WITH_CUDA
  sise::cuda::upsample_bilinear(features.as<float>(), in, masks.as<float>(), height, width);
  sise::cuda::minmax_normalize(masks.as<float>(), out, flags.as<uint8_t>());
  sise::cuda::synchronize();
#else
  no_cuda();
#endif
}

sise::ImageShape image_shape(int32_t channels, int32_t height, int32_t width, const std::string& layout) {
  if (layout != "NCHW" && layout != "NHWC") throw std::invalid_argument("layout must be 'NCHW' or 'NHWC', got '" + layout + "'");
  return {channels, height, width, layout == "NCHW" ? sise::Layout::NCHW : sise::Layout::NHWC};
}

// out[b] = image * masks[b] for b < count, in the image's layout.
void masked_batch_into(const Buffer& image, int32_t channels, int32_t height, int32_t width, const std::string& layout,
                       const Buffer& masks, int64_t count, Buffer& out) {
  require_same_device({&image, &masks, &out});
  const sise::ImageShape s = image_shape(channels, height, width, layout);
  const int64_t plane = static_cast<int64_t>(height) * width;
  require_bytes(image, plane * channels * 4, "image");
  require_bytes(masks, count * plane * 4, "masks");
  require_bytes(out, count * plane * channels * 4, "out");
  if (image.device() == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::build_masked_batch(image.as<float>(), s, masks.as<float>(), count, out.as<float>());
    return;
  }
#ifdef SISE_WITH_CUDA
  sise::cuda::build_masked_batch(image.as<float>(), s, masks.as<float>(), count, out.as<float>());
  sise::cuda::synchronize();
#else
  no_cuda();
#endif
}

// acc += sum_b weights[b] * masks[b] / sum(masks[b]) (SISE eq. 10-11); acc holds float64.
void accumulate_into(const Buffer& masks, int64_t count, int32_t height, int32_t width, const Buffer& weights,
                     Buffer& acc) {
  require_same_device({&masks, &weights, &acc});
  const int64_t plane = static_cast<int64_t>(height) * width;
  require_bytes(masks, count * plane * 4, "masks");
  require_bytes(weights, count * 4, "weights");
  require_bytes(acc, plane * 8, "acc");
  const sise::MapStack shape{count, height, width};
  if (masks.device() == Device::CPU) {
    py::gil_scoped_release release;
    sise::cpu::accumulate_contributions(masks.as<float>(), shape, weights.as<float>(), acc.as<double>());
    return;
  }
#ifdef SISE_WITH_CUDA
  sise::cuda::accumulate_contributions(masks.as<float>(), shape, weights.as<float>(), acc.as<double>());
  sise::cuda::synchronize();
#else
  no_cuda();
#endif
}

void upload(Buffer& buffer, const py::array& host) {
  if (!(host.flags() & py::array::c_style)) throw std::invalid_argument("upload: the array must be C-contiguous");
  buffer.upload(host.data(), static_cast<std::size_t>(host.nbytes()));
}

void download(const Buffer& buffer, py::array host) {
  if (!(host.flags() & py::array::c_style) || !host.writeable()) {
    throw std::invalid_argument("download: the array must be writeable and C-contiguous");
  }
  const std::size_t bytes = static_cast<std::size_t>(host.nbytes());
  void* dst = host.mutable_data();
  py::gil_scoped_release release;
  buffer.download(dst, bytes);
}

py::array_t<float> download_columns(const Buffer& buffer, int64_t rows, int64_t row_length,
                                    const std::vector<int64_t>& columns) {
  py::array_t<float> out({static_cast<py::ssize_t>(columns.size()), static_cast<py::ssize_t>(rows)});
  float* dst = out.mutable_data();
  py::gil_scoped_release release;
  buffer.download_columns(dst, rows, row_length, columns);
  return out;
}

int cuda_device_count() {
#ifdef SISE_WITH_CUDA
  return sise::cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled array kernels of onnx_sise (CPU, and CUDA where built).";
  sise::make_fork_safe();
  m.attr("built_with_cuda") = kCompiledWithCuda;
  m.attr("otsu_bins") = sise::kOtsuBins;
  py::class_<Buffer>(m, "Buffer", "Host or CUDA memory that kernels and onnxruntime IO binding share.")
      .def(py::init([](std::size_t bytes, const std::string& device) { return new Buffer(bytes, parse_device(device)); }),
           py::arg("nbytes"), py::arg("device") = "cpu")
      .def_property_readonly("nbytes", &Buffer::bytes)
      .def_property_readonly("device", [](const Buffer& b) { return b.device() == Device::CPU ? "cpu" : "cuda"; })
      .def_property_readonly("address", [](const Buffer& b) { return reinterpret_cast<std::uintptr_t>(b.data()); })
      .def("upload", &upload, py::arg("array"))
      .def("download", &download, py::arg("array"))
      .def("download_columns", &download_columns, py::arg("rows"), py::arg("row_length"), py::arg("columns"))
      .def("zero", &Buffer::zero);
  m.def("masks_from_features", &masks_from_features, py::arg("features"), py::arg("count"), py::arg("h"), py::arg("w"),
        py::arg("height"), py::arg("width"), py::arg("masks"), py::arg("flags"));
  m.def("masked_batch_into", &masked_batch_into, py::arg("image"), py::arg("channels"), py::arg("height"),
        py::arg("width"), py::arg("layout"), py::arg("masks"), py::arg("count"), py::arg("out"));
  m.def("accumulate_into", &accumulate_into, py::arg("masks"), py::arg("count"), py::arg("height"), py::arg("width"),
        py::arg("weights"), py::arg("acc"));
  m.def("cuda_device_count", &cuda_device_count, "Number of visible CUDA devices (0 without CUDA).");
  m.def("upsample_bilinear", &upsample_bilinear, py::arg("maps"), py::arg("height"), py::arg("width"),
        py::arg("device") = "cpu");
  m.def("minmax_normalize", &minmax_normalize, py::arg("maps"), py::arg("device") = "cpu");
  m.def("build_masked_batch", &build_masked_batch, py::arg("image"), py::arg("masks"), py::arg("out"),
        py::arg("layout") = "NCHW", py::arg("device") = "cpu");
  m.def("accumulate_contributions", &accumulate_contributions, py::arg("masks"), py::arg("scores"), py::arg("acc"),
        py::arg("device") = "cpu");
  m.def("otsu_threshold", &otsu_threshold, py::arg("values"), py::arg("bins") = sise::kOtsuBins,
        py::arg("device") = "cpu");
  m.def("fuse_cascade", &fuse_cascade, py::arg("maps"), py::arg("gate") = "hard", py::arg("sharpness") = 100.0f,
        py::arg("device") = "cpu");
}
