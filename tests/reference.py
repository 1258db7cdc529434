"""NumPy twins of the compiled kernels, written from the definitions, not from the C++."""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu


def upsample_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize, (N, h, w) -> (N, height, width)."""
    n, h, w = maps.shape

    def taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
        src = np.clip(src, 0, None)
        lo = np.minimum(np.floor(src).astype(int), in_size - 1)
        frac = np.where(lo >= in_size - 1, 0.0, src - lo)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, frac

    y0, y1, fy = taps(height, h)
    x0, x1, fx = taps(width, w)
    m = maps.astype(np.float64)
    top = m[:, y0][:, :, x0] * (1 - fx) + m[:, y0][:, :, x1] * fx
    bottom = m[:, y1][:, :, x0] * (1 - fx) + m[:, y1][:, :, x1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)


def minmax_normalize(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    informative = np.isfinite(flat).all(axis=1) & (hi > lo)
    out = np.zeros_like(flat)
    span = np.where(informative, hi - lo, 1.0)
    out[informative] = ((flat - lo[:, None]) / span[:, None])[informative]
    return out.reshape(maps.shape).astype(np.float32), informative


def masked_batch(image: np.ndarray, masks: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    if layout == "NCHW":
        return image[None] * masks[:, None]
    return image[None] * masks[..., None]


def contributions(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """sum_b score_b * m_b / sum(m_b) (SISE eq. 10-11)."""
    sums = masks.reshape(masks.shape[0], -1).sum(axis=1, dtype=np.float64)
    weights = np.divide(scores.astype(np.float64), sums, out=np.zeros_like(sums), where=sums > 0)
    return np.tensordot(weights, masks.astype(np.float64), axes=1)


def fuse_cascade(maps: np.ndarray, gate: str = "hard", sharpness: float = 100.0) -> np.ndarray:
    """SISE fusion with skimage's Otsu: normalise, F = V_0, F = (F + V_l) * [V_l > t_l]."""
    normalised, informative = minmax_normalize(maps)
    fused = None
    for v, useful in zip(normalised.astype(np.float64), informative):
        if not useful:
            continue
        if fused is None:
            fused = v.copy()
            continue
        t = threshold_otsu(v)
        keep = (v > t).astype(np.float64) if gate == "hard" else 1 / (1 + np.exp(-sharpness * (v - t)))
        fused = (fused + v) * keep
    if fused is None:
        return np.zeros(maps.shape[1:], np.float32)
    return minmax_normalize(fused[None].astype(np.float32))[0][0]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])
