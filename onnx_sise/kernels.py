"""Typed wrappers over the compiled kernels in `onnx_sise._core`: arrays are checked
and made contiguous float32 here, once, at the border. `Buffer` and the kernels over
Buffers (the IO-binding pipeline of methods/sise/io_binding.py) are the compiled ones as they are."""

from __future__ import annotations

import numpy as np

from . import _core
from ._core import Buffer, accumulate_into, masked_batch_into, masks_from_features

__all__ = ["Buffer", "accumulate_into", "masked_batch_into", "masks_from_features", "upsample_bilinear",
           "bilinear_matrix", "minmax_normalize", "build_masked_batch", "accumulate_contributions", "otsu_threshold", "fuse_cascade"]

OTSU_BINS: int = _core.otsu_bins


def cuda_device_count() -> int:
    return int(_core.cuda_device_count())


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def upsample_bilinear(maps: np.ndarray, height: int, width: int, device: str = "cpu") -> np.ndarray:
    """Resize maps (N, h, w) to (N, height, width), half-pixel centres (cv2 INTER_LINEAR)."""
    return _core.upsample_bilinear(_f32(maps), int(height), int(width), device)


def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) matrix R with R @ v = half-pixel-centre bilinear resize of v
    (the convention of upsample_bilinear and torch's align_corners=False)."""
    src = np.clip((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5, 0, None)
    lo = np.minimum(np.floor(src).astype(int), in_size - 1)
    frac = np.where(lo >= in_size - 1, 0.0, src - lo)
    hi = np.minimum(lo + 1, in_size - 1)
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), 1 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


def minmax_normalize(maps: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Rescale each map of maps (N, H, W) to [0, 1] in place; returns a bool (N,) array
    that is False for constant maps (set to zero)."""
    if maps.dtype != np.float32 or not maps.flags.c_contiguous or not maps.flags.writeable:
        raise TypeError("minmax_normalize works in place: pass a writeable C-contiguous float32 array")
    return _core.minmax_normalize(maps, device).astype(bool)


def build_masked_batch(image: np.ndarray, masks: np.ndarray, out: np.ndarray, layout: str = "NCHW",
                       device: str = "cpu") -> None:
    """out[b] = image * masks[b] for image (C, H, W) or (H, W, C), masks (B, H, W), into
    the caller's float32 buffer `out` (>= B images), e.g. the one onnxruntime reads."""
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise TypeError("out must be a C-contiguous float32 array")
    _core.build_masked_batch(_f32(image), _f32(masks), out, layout, device)


def accumulate_contributions(masks: np.ndarray, scores: np.ndarray, acc: np.ndarray, device: str = "cpu") -> None:
    """acc += sum_b scores[b] * masks[b] / sum(masks[b]) (SISE eq. 10 with eq. 11)."""
    if acc.dtype != np.float64 or not acc.flags.c_contiguous:
        raise TypeError("acc must be a C-contiguous float64 array")
    _core.accumulate_contributions(_f32(masks), _f32(scores), acc, device)


def otsu_threshold(values: np.ndarray, bins: int = OTSU_BINS, device: str = "cpu") -> float:
    """Otsu's threshold over a `bins`-bin histogram of the values (skimage's rule)."""
    return float(_core.otsu_threshold(_f32(values).ravel(), int(bins), device))


def fuse_cascade(maps: np.ndarray, gate: str = "hard", sharpness: float = 100.0, device: str = "cpu") -> np.ndarray:
    """SISE fusion (Fig. 5) of block maps (L, H, W), shallowest first; see methods/sise/fusion.py."""
    return _core.fuse_cascade(_f32(maps), gate, float(sharpness), device)
