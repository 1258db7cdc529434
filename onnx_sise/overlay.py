"""Heat-map overlays and the files `explain` writes."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from .errors import OutputError
from .image_io import write_atomically


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The photo (H, W, 3) uint8 RGB blended with a JET colouring of saliency (H, W) in [0, 1]."""
    heat = cv2.applyColorMap(np.round(saliency * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError("PNG encoding failed")
    return encoded.tobytes()


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def output_paths(image_path: Path, out_dir: Path | None, method: str) -> tuple[Path, Path]:
    """(overlay PNG, raw map .npy) for an image: `<stem>.<method>.png` / `.npy`."""
    directory = out_dir if out_dir is not None else image_path.parent
    return directory / f"{image_path.stem}.{method}.png", directory / f"{image_path.stem}.{method}.npy"


def write_outputs(rgb: np.ndarray, saliency: np.ndarray, png_path: Path, npy_path: Path) -> None:
    """Both files or neither (each written to a temporary file, then renamed)."""
    png = encode_png(overlay(rgb, saliency))
    npy = encode_npy(saliency.astype(np.float32))
    write_atomically(npy_path, npy)
    try:
        write_atomically(png_path, png)
    except OutputError:
        npy_path.unlink(missing_ok=True)
        raise
