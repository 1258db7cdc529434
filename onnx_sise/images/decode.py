"""Decoding: an encoded photo, a file or bytes, as (H, W, 3) uint8 RGB. Headers are
checked against the pixel budget before any decoder allocates (`headers`, `png_checks`),
16-bit samples are scaled to 8 bits and OpenCV's own warnings are kept off stderr."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from ..files.reading import read_regular
from .headers import Header, HeaderError, read_header
from .png_checks import checked_png

# Decoded images above this many pixels are refused before decoding (a 16384 x 16384
# photo passes; a small PNG that declares 100000 x 100000 pixels does not).
MAX_PIXELS = 1 << 28
MAX_IMAGE_BYTES = 1 << 30  # an encoded photo; the decoders bound the pixels
SCALING_BLOCK = 1 << 22  # samples scaled from 16 to 8 bits at a time


def read_rgb(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo at `path` as (H, W, 3) uint8 RGB, EXIF rotation applied.

    Grayscale and palette images become RGB, an alpha channel is dropped (the colour
    channels are kept as stored, not composited), 16-bit images are scaled to 8 bits
    (round(v * 255 / 65535)); floating-point images are refused."""
    p = Path(path)
    try:
        data = read_regular(p, "image", ImageError, MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except IsADirectoryError:
        raise ImageError(f"{p} is a directory, not an image file") from None
    return decode_rgb(np.frombuffer(data, np.uint8), str(p), max_pixels)


def decode_rgb(data: bytes | bytearray | memoryview | np.ndarray, name: str = "the image",
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM/PAM) as (H, W, 3) uint8
    RGB, with the conversions of read_rgb; `name` is how error messages call the image.
    The header is read first (headers.py): other formats, untrustworthy headers and
    any declared area over `max_pixels` are refused before a decoder allocates."""
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.size == 0:
        raise ImageError(f"{name} is empty (0 bytes): not an image")
    try:
        header = read_header(buffer)
        _check_pixel_budget(header, name, max_pixels)
        encoded = checked_png(buffer) if header.format == "PNG" else buffer
    except HeaderError as exc:
        raise ImageError(f"cannot decode {name} as an image: {exc}") from None
    decoded = _decode_quietly(np.frombuffer(encoded, np.uint8))
    if decoded is None:
        raise ImageError(f"cannot decode {name} as an image: the {header.format} file is corrupt")
    if decoded.dtype == np.uint16:
        decoded = _eight_bits(decoded)
    elif decoded.dtype != np.uint8:
        raise ImageError(f"{name} has {decoded.dtype} samples: only 8- and 16-bit images are supported, "
                         "save it as an 8-bit PNG or JPEG")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)


def _check_pixel_budget(header: Header, name: str, max_pixels: int) -> None:
    for area in header.areas:
        if area.pixels > max_pixels:
            raise ImageError(f"{name} declares {area.width} x {area.height} pixels{area.where}, more than the "
                             f"limit of {max_pixels}: resize it first (or raise max_pixels)")


def _eight_bits(decoded: np.ndarray) -> np.ndarray:
    """16-bit samples as round(v * 255 / 65535), a block of rows at a time: the 32-bit
    temporaries stay small whatever the image's size."""
    out = np.empty(decoded.shape, np.uint8)
    rows = max(1, SCALING_BLOCK // max(1, decoded[0].size))
    for top in range(0, decoded.shape[0], rows):
        block = decoded[top:top + rows].astype(np.uint32)
        block *= 255
        block += 32767
        block //= 65535
        out[top:top + rows] = block
    return out


_quiet_lock = threading.Lock()
_quiet_users = 0
_saved_level = 0


def _decode_quietly(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warnings on stderr: our error says it once.
    OpenCV's log level is process-wide: the first of concurrent decodes silences it and
    the last restores it, so threads never leave it silenced."""
    global _quiet_users, _saved_level
    with _quiet_lock:
        if _quiet_users == 0:
            _saved_level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet_users += 1
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error:
        return None
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                cv2.utils.logging.setLogLevel(_saved_level)

