#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "../device_math.h"
#include "../masks.h"
#include "../otsu.h"

namespace sise {

float otsu_from_histogram(const int64_t* counts, int32_t bins, float lo, float hi) {
  const double width = (static_cast<double>(hi) - lo) / bins;
  std::vector<double> below_weight(bins), below_moment(bins), above_weight(bins), above_moment(bins);
  double w = 0.0, m = 0.0;
  for (int32_t i = 0; i < bins; ++i) {
    const double centre = lo + (i + 0.5) * width;
    w += static_cast<double>(counts[i]);
    m += static_cast<double>(counts[i]) * centre;
    below_weight[i] = w;
    below_moment[i] = m;
  }
  w = 0.0;
  m = 0.0;
  for (int32_t i = bins - 1; i >= 0; --i) {
    const double centre = lo + (i + 0.5) * width;
    w += static_cast<double>(counts[i]);
    m += static_cast<double>(counts[i]) * centre;
    above_weight[i] = w;
    above_moment[i] = m;
  }
  int32_t best = 0;
  double best_variance = -1.0;
  for (int32_t i = 0; i + 1 < bins; ++i) {
    if (below_weight[i] <= 0.0 || above_weight[i + 1] <= 0.0) continue;
    const double gap = below_moment[i] / below_weight[i] - above_moment[i + 1] / above_weight[i + 1];
    const double variance = below_weight[i] * above_weight[i + 1] * gap * gap;
    if (variance > best_variance) {
      best_variance = variance;
      best = i;
    }
  }
  return static_cast<float>(lo + (best + 0.5) * width);
}

namespace cpu {

float otsu_threshold(const float* values, int64_t n, int32_t bins) {
  if (n <= 0) throw std::invalid_argument("otsu_threshold: expected at least one value, got none");
  if (bins < 2) throw std::invalid_argument("otsu_threshold: expected at least 2 bins");
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) throw std::invalid_argument("otsu_threshold: values must be finite");
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
  }
  if (!(hi > lo)) return lo;
  std::vector<int64_t> counts(bins, 0);
  for (int64_t i = 0; i < n; ++i) ++counts[histogram_bin(values[i], lo, hi, bins)];
  return otsu_from_histogram(counts.data(), bins, lo, hi);
}

void fuse_cascade(const float* maps, MapStack shape, Gate gate, float sharpness, float* work, float* out) {
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  std::copy(maps, maps + shape.count * plane, work);
  std::vector<uint8_t> informative(shape.count);
  minmax_normalize(work, shape, informative.data());
  std::fill(out, out + plane, 0.0f);
  bool started = false;
  for (int64_t l = 0; l < shape.count; ++l) {
    if (!informative[l]) continue;
    const float* deeper = work + l * plane;
    if (!started) {
      std::copy(deeper, deeper + plane, out);
      started = true;
      continue;
    }
    const float threshold = otsu_threshold(deeper, plane, kOtsuBins);
    for (int64_t i = 0; i < plane; ++i) {
      const float keep = gate == Gate::Hard ? (deeper[i] > threshold ? 1.0f : 0.0f)
                                            : soft_gate(deeper[i], threshold, sharpness);
      out[i] = (out[i] + deeper[i]) * keep;
    }
  }
  uint8_t unused = 0;
  minmax_normalize(out, MapStack{1, shape.height, shape.width}, &unused);
}

}  // namespace cpu
}  // namespace sise
