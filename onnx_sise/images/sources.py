"""Every photo `Explainer.explain` accepts, as (H, W, 3) uint8 RGB.

- a path (str or os.PathLike) or encoded bytes (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM/PAM):
  the header is read and checked against max_pixels first, then decoded by
  decode.decode_rgb (EXIF rotation applied, grayscale/palette to RGB, alpha dropped,
  16-bit scaled to 8);
- a PIL image: EXIF rotation applied, converted to RGB the same way (Pillow is not a
  dependency: any object from the PIL package is recognised by its module);
- an (H, W, 3) uint8 RGB numpy array: checked and used as it is.

Float arrays are preprocessed tensors, not photos: model_input.py takes them.
"""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from ..errors import ImageError
from ..files.reading import text_path
from .decode import MAX_PIXELS, decode_rgb, read_rgb

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
FLOAT_KINDS = "f"
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def rgb_of(image: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB from a path, encoded bytes, a PIL image or an RGB array."""
    if isinstance(image, (str, os.PathLike)):
        path = text_path(image)
        if path is None:
            raise ImageError(f"image path must be a str or an os.PathLike of str, got {type(image).__name__}")
        return read_rgb(path, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_rgb(image, "the image bytes", max_pixels)
    if isinstance(image, np.ndarray):
        return checked_rgb(image, max_pixels)
    if type(image).__module__.split(".")[0] == "PIL" and hasattr(image, "convert"):
        return pil_rgb(image, max_pixels)
    raise ImageError(f"image must be a path, encoded bytes, a PIL image or an (H, W, 3) uint8 RGB array, "
                     f"got {type(image).__name__}")


def checked_rgb(image: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array within `max_pixels`, C-contiguous; anything else is refused."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        hint = " (float arrays are taken as preprocessed model inputs)" if image.dtype.kind in FLOAT_KINDS else ""
        raise ImageError(f"image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image array is empty: shape {image.shape}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(f"image array has {image.shape[1]} x {image.shape[0]} pixels, more than the limit of "
                         f"{max_pixels}: resize it first (or raise max_pixels)")
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


def pil_rgb(image: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8 RGB: EXIF rotation applied, alpha dropped, 16-bit
    grayscale scaled to 8 bits; 32-bit integer and float modes are refused."""
    from PIL import ImageOps

    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"the PIL image has {width} x {height} pixels, more than the limit of {max_pixels}: "
                         "resize it first (or raise max_pixels)")
    if width == 0 or height == 0:
        raise ImageError(f"the PIL image is empty: size {image.size}")
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode in SIXTEEN_BIT_MODES:
            gray = np.asarray(image).astype(np.uint32)
            gray8 = ((gray * 255 + 32767) // 65535).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(gray8[..., None], 3, axis=2))
        if image.mode in ("I", "F"):
            raise ImageError(f"PIL mode {image.mode!r} holds unbounded values: convert the image to 8-bit RGB first")
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors on truncated or broken data
        raise ImageError(f"cannot read the PIL image: {str(exc).splitlines()[0][:160] if str(exc) else exc!r}") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)
