#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../device_math.h"
#include "../masks.h"

namespace sise::cpu {

void minmax_normalize(float* maps, MapStack shape, uint8_t* informative) {
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  // One map per iteration: a single map stays on this thread (waking the team costs more).
#pragma omp parallel for schedule(static) if(shape.count > 1)
  for (int64_t n = 0; n < shape.count; ++n) {
    float* map = maps + n * plane;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -std::numeric_limits<float>::infinity();
    bool finite = true;
    for (int64_t i = 0; i < plane; ++i) {
      finite = finite && std::isfinite(map[i]);
      lo = std::min(lo, map[i]);
      hi = std::max(hi, map[i]);
    }
    if (!finite || !(hi > lo)) {
      std::fill(map, map + plane, 0.0f);
      informative[n] = 0;
      continue;
    }
    const float inv_range = 1.0f / (hi - lo);
    for (int64_t i = 0; i < plane; ++i) map[i] = rescale_unit(map[i], lo, inv_range);
    informative[n] = 1;
  }
}

void build_masked_batch(const float* image, ImageShape s, const float* masks, int64_t count, float* out) {
  const int64_t plane = static_cast<int64_t>(s.height) * s.width;
  const int64_t item = plane * s.channels;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < count; ++b) {
    const float* mask = masks + b * plane;
    float* dst = out + b * item;
    if (s.layout == Layout::NCHW) {
      for (int32_t c = 0; c < s.channels; ++c) {
        const float* src = image + c * plane;
        float* d = dst + c * plane;
        for (int64_t i = 0; i < plane; ++i) d[i] = src[i] * mask[i];
      }
    } else {
      for (int64_t i = 0; i < plane; ++i) {
        for (int32_t c = 0; c < s.channels; ++c) dst[i * s.channels + c] = image[i * s.channels + c] * mask[i];
      }
    }
  }
}

void accumulate_contributions(const float* masks, MapStack shape, const float* scores, double* acc) {
  const int64_t plane = static_cast<int64_t>(shape.height) * shape.width;
  std::vector<double> weight(shape.count, 0.0);
  for (int64_t b = 0; b < shape.count; ++b) {
    double total = 0.0;
    const float* mask = masks + b * plane;
    for (int64_t i = 0; i < plane; ++i) total += mask[i];
    weight[b] = total > 0.0 ? static_cast<double>(scores[b]) / total : 0.0;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < plane; ++i) {
    double sum = 0.0;
    for (int64_t b = 0; b < shape.count; ++b) sum += weight[b] * masks[b * plane + i];
    acc[i] += sum;
  }
}

}  // namespace sise::cpu
