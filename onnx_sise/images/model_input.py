"""The one path from any image `Explainer.explain` accepts to the model's input tensor.

- a float numpy array of the model's input shape, with or without a batch axis of 1:
  an already preprocessed tensor, checked and used as it is (the map then has the
  input's size);
- any photo sources.py accepts (a path, encoded bytes, a PIL image, an (H, W, 3) uint8
  RGB array): resized whole to the model's size (`resize`: RESIZE_METHODS) and normalised.

The photo is resized to the model's input once; the explainer keeps only the small
tensor, never the photo, while the masked passes run.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ImageError
from ..model.info import InputSpec
from .decode import MAX_PIXELS
from .sources import FLOAT_KINDS, ImageSource, rgb_of

# How a photo is resized to the model's input: "area" = cv2.INTER_AREA when the photo
# shrinks on both sides, INTER_LINEAR otherwise (the default); "linear" = INTER_LINEAR always.
RESIZE_METHODS = ("area", "linear")


@dataclass(frozen=True)
class ModelInput:
    """x: the model input without batch axis, float32; photo_size: (H, W) the map is returned at."""

    x: np.ndarray
    photo_size: tuple[int, int]


def model_input(image: ImageSource, spec: InputSpec, max_pixels: int = MAX_PIXELS,
                resize: str = "area") -> ModelInput:
    """The model input for any accepted image (see the module docstring)."""
    if isinstance(image, np.ndarray) and image.dtype.kind in FLOAT_KINDS:
        return ModelInput(_checked_tensor(image, spec), (spec.height, spec.width))
    rgb = rgb_of(image, max_pixels)
    return ModelInput(_normalised(resized_rgb(rgb, spec, resize), spec), (rgb.shape[0], rgb.shape[1]))


def _checked_tensor(tensor: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A float tensor already in the model's input space: (C, H, W) or (H, W, C) by the
    model's layout, optionally with a leading batch axis of 1; finite values only."""
    expected = (3, spec.height, spec.width) if spec.layout == "NCHW" else (spec.height, spec.width, 3)
    shape = tensor.shape[1:] if tensor.ndim == 4 and tensor.shape[0] == 1 else tensor.shape
    if tuple(shape) != expected:
        raise ImageError(f"a float array is taken as a preprocessed model input and must have shape {expected} "
                         f"({spec.layout}, optionally with a batch axis of 1), got {tensor.shape}; "
                         "pass photos as (H, W, 3) uint8 RGB")
    x = np.ascontiguousarray(tensor.reshape(expected), dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ImageError(f"the preprocessed input holds {bad} NaN or infinite values: check the preprocessing")
    return x


def resized_rgb(rgb: np.ndarray, spec: InputSpec, resize: str = "area") -> np.ndarray:
    """The whole photo (H, W, 3) uint8 resized to the model's size (no crop) by `resize`
    (one of RESIZE_METHODS); a photo of that size already comes back as it is."""
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    shrinks = rgb.shape[0] > spec.height and rgb.shape[1] > spec.width
    area = resize == "area" and shrinks
    return cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)


def _normalised(resized: np.ndarray, spec: InputSpec) -> np.ndarray:
    """x = (pixel * scale - mean) / std of the photo at the model's size; returns
    (C, H, W) or (H, W, C) float32, no batch axis."""
    if spec.color == "BGR":
        resized = resized[..., ::-1]
    x = resized.astype(np.float32) * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if spec.layout == "NCHW" else x)
