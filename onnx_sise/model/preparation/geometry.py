"""Window geometry shared by the convolution and pooling rules and the float64 check."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resolve_pads(auto_pad: str, pads: Sequence[int] | None, spatial_in: Sequence[int], kernel: Sequence[int],
                 strides: Sequence[int], dilations: Sequence[int], spatial_out: Sequence[int]) -> list[int]:
    """Begin and end pads per axis (ONNX order), with auto_pad resolved from static shapes."""
    n = len(spatial_in)
    if auto_pad in ("NOTSET", ""):
        return list(pads) if pads else [0] * (2 * n)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    begins, ends = [], []
    for size, k, stride, d, out in zip(spatial_in, kernel, strides, dilations, spatial_out):
        total = max(0, (out - 1) * stride + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def window_taps(size: int, out: int, kernel: int, stride: int, dilation: int, begin: int) -> np.ndarray:
    """(out, kernel) input positions each window reads along one axis (outside [0, size): padding)."""
    return (np.arange(out) * stride - begin)[:, None] + np.arange(kernel)[None, :] * dilation
