"""Reading photos and turning them into the model's input tensor, and writing results
atomically (temporary file, then rename: never a half-written output)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError, OutputError
from .model_info import InputSpec


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The photo at `path` as (H, W, 3) uint8 RGB, EXIF rotation applied."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image not found: {p}")
    if p.is_dir():
        raise ImageError(f"{p} is a directory, not an image file")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read {p}: {exc.strerror}") from None
    if data.size == 0:
        raise ImageError(f"{p} is empty (0 bytes): not an image")
    bgr = _decode_quietly(data)
    if bgr is None:
        raise ImageError(f"cannot decode {p} as an image: the file is corrupt or not PNG/JPEG/BMP/TIFF/WebP")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_quietly(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own warnings on stderr: our error says it once."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    finally:
        cv2.utils.logging.setLogLevel(previous)


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


def ensure_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable: choose another with --out")


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` through a temporary file in the same directory."""
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
