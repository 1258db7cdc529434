"""The Gaussian blur of a model input: SIGCAM's baselines and insertion's starting point."""

from __future__ import annotations

import cv2
import numpy as np


def blurred(image: np.ndarray, layout: str = "NCHW", kernel: int = 51, sigma: float = 50.0) -> np.ndarray:
    """Gaussian blur of a model input, (C, H, W) or (H, W, C) by `layout`."""
    hwc = image.transpose(1, 2, 0) if layout == "NCHW" else image
    out = cv2.GaussianBlur(np.ascontiguousarray(hwc), (kernel, kernel), sigma)
    out = out.reshape(hwc.shape)
    return np.ascontiguousarray(out.transpose(2, 0, 1) if layout == "NCHW" else out)
