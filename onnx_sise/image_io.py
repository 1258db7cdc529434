"""Reading photos and turning them into the model's input tensor (results are written by
output_files.py)."""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError
from .model_info import InputSpec
from .regular_files import read_regular

# Decoded images above this many pixels are refused before decoding (a 16384 x 16384
# photo passes; a small PNG that declares 100000 x 100000 pixels does not).
MAX_PIXELS = 1 << 28
MAX_IMAGE_BYTES = 1 << 30  # an encoded photo; the decoders bound the pixels
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_rgb(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo at `path` as (H, W, 3) uint8 RGB, EXIF rotation applied.

    Grayscale and palette images become RGB, an alpha channel is dropped (the colour
    channels are kept as stored, not composited), 16-bit images are scaled to 8 bits
    (round(v * 255 / 65535)); floating-point images are refused."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if p.is_dir():
        raise ImageError(f"{p} is a directory, not an image file")
    try:
        data = read_regular(p, "image", ImageError, MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except IsADirectoryError:
        raise ImageError(f"{p} is a directory, not an image file") from None
    return decode_rgb(np.frombuffer(data, np.uint8), str(p), max_pixels)


def decode_rgb(data: bytes | bytearray | memoryview | np.ndarray, name: str = "the image",
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, TIFF, WebP) as (H, W, 3) uint8 RGB, with the
    conversions of read_rgb; `name` is how error messages call the image."""
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.size == 0:
        raise ImageError(f"{name} is empty (0 bytes): not an image")
    declared = declared_size(buffer)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise ImageError(f"{name} declares {declared[1]} x {declared[0]} pixels, more than the limit of "
                         f"{max_pixels}: resize it first (or raise max_pixels)")
    damage = png_damage(buffer)
    if damage is not None:
        raise ImageError(f"cannot decode {name} as an image: the PNG {damage}")
    decoded = _decode_quietly(buffer)
    if decoded is None:
        raise ImageError(f"cannot decode {name} as an image: the file is corrupt or not PNG/JPEG/BMP/TIFF/WebP")
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageError(f"{name} has {decoded.dtype} samples: only 8- and 16-bit images are supported, "
                         "save it as an 8-bit PNG or JPEG")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)


def declared_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) a PNG or JPEG header declares, read without decoding; None for
    other formats or a header too short to say."""
    head = data[:32].tobytes()
    if head.startswith(PNG_SIGNATURE) and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    raw, i = data, 2
    while i + 9 < raw.size:
        if raw[i] != 0xFF:
            return None
        marker = int(raw[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int(raw[i + 5]) << 8 | int(raw[i + 6]), int(raw[i + 7]) << 8 | int(raw[i + 8])
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        i += 2 + (int(raw[i + 2]) << 8 | int(raw[i + 3]))
    return None


def png_damage(data: np.ndarray) -> str | None:
    """What is wrong with a PNG's chunk structure (a truncated chunk, a failed CRC, no
    IEND), or None (also for other formats). libpng would print its own complaint on
    stderr, past OpenCV's log level, before failing: such files never reach it."""
    if data[:8].tobytes() != PNG_SIGNATURE:
        return None
    raw, i = memoryview(data), 8
    while i + 12 <= len(raw):
        length = int.from_bytes(raw[i:i + 4], "big")
        kind = bytes(raw[i + 4:i + 8])
        end = i + 8 + length
        if end + 4 > len(raw):
            return f"is truncated inside its {kind.decode('latin-1')!r} chunk"
        if zlib.crc32(raw[i + 4:end]) != int.from_bytes(raw[end:end + 4], "big"):
            return f"chunk {kind.decode('latin-1')!r} fails its CRC check: the file is corrupt"
        if kind == b"IEND":
            return None
        i = end + 4
    return "is truncated: it has no IEND chunk"


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


def to_model_input(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize the whole photo to the model's size (no crop) and apply
    x = (pixel * scale - mean) / std; returns (C, H, W) or (H, W, C) float32, no batch axis."""
    resized = cv2.resize(rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA
                         if rgb.shape[0] > spec.height and rgb.shape[1] > spec.width else cv2.INTER_LINEAR)
    if spec.color == "BGR":
        resized = resized[..., ::-1]
    x = resized.astype(np.float32) * np.float32(spec.scale)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if spec.layout == "NCHW" else x)

