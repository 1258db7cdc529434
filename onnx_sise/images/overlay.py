"""Heat-map overlays and the files `explain` writes."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from ..files.writing import check_output_name, identities, refuse_overwriting, replace_together

# Stands for the class id in a top-k output name before the classes are known.
CLASS_ID_PLACEHOLDER = "<class>"
OVERLAY_BLOCK = 1 << 20  # pixels blended at a time


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    """The photo (H, W, 3) uint8 RGB under an inferno colouring of saliency (H, W) in
    [0, 1] (a perceptually uniform colormap: equal steps of saliency look equally far
    apart), each pixel's opacity alpha * sqrt(saliency): where the map is 0 the photo shows
    as it is, and weak but non-zero saliency still shows. Blended a block of rows at a time, so that a large photo needs no float copy of
    itself."""
    out = np.empty_like(rgb)
    rows = max(1, OVERLAY_BLOCK // max(1, rgb.shape[1]))
    for top in range(0, rgb.shape[0], rows):
        level = saliency[top:top + rows]
        heat = cv2.applyColorMap(np.round(level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
        opacity = (alpha * np.sqrt(level.astype(np.float32)))[..., None]
        blended = rgb[top:top + rows] * (1 - opacity) + heat * opacity
        out[top:top + rows] = np.round(blended).astype(np.uint8)
    return out


def encode_png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError("PNG encoding failed")
    return encoded.tobytes()


def encode_grey16_png(saliency: np.ndarray) -> bytes:
    """A map in [0, 1] (H, W) as a 16-bit grey PNG, round(v * 65535) per pixel."""
    grey = np.rint(np.clip(saliency.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", grey)
    if not ok:
        raise OutputError("PNG encoding failed")
    return encoded.tobytes()


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def output_paths(image_path: Path, out_dir: Path | None, suffix: str) -> tuple[Path, Path]:
    """(overlay PNG, raw map .npy) for an image: `<stem>.<suffix>.png` / `.npy`, where the
    suffix is the method, or `<method>.<class id>` when an image has several results."""
    directory = out_dir if out_dir is not None else image_path.parent
    return directory / f"{image_path.stem}.{suffix}.png", directory / f"{image_path.stem}.{suffix}.npy"


def result_suffix(method: str, target: int, results: int) -> str:
    return method if results == 1 else f"{method}.{target}"


def planned_suffixes(method: str, targets: Sequence[int] | None, top_k: int | None) -> list[str]:
    """The suffix of every result an image will have; with top_k > 1 the class ids are
    known only after scoring: the suffixes then hold CLASS_ID_PLACEHOLDER."""
    if targets:
        return [result_suffix(method, t, len(targets)) for t in targets]
    if top_k is not None and top_k > 1:
        return [f"{method}.{CLASS_ID_PLACEHOLDER}"]
    return [method]


def check_output_plan(images: Sequence[Path], out_dir: Path | None, suffixes: Sequence[str],
                      inputs: Sequence[Path]) -> None:
    """Refuse, before any work, outputs that would replace one another (two images with one
    stem into one folder, a class given twice), replace an input of the run (the same file
    under any name, hard links too) or have a name no file system accepts."""
    owners: dict[Path, int] = {}
    protected = identities(inputs)
    for number, image in enumerate(images):
        for suffix in suffixes:
            for path in output_paths(image, out_dir, suffix):
                check_output_name(path)
                _refuse_collision(path, images, number, owners)
                _refuse_overwriting_input(path, suffix, protected)


def _refuse_collision(path: Path, images: Sequence[Path], number: int, owners: dict[Path, int]) -> None:
    """`owners` maps each output planned so far (in its real directory) to its image's index."""
    where = Path(os.path.realpath(path.parent)) / path.name
    if where not in owners:
        owners[where] = number
        return
    first = images[owners[where]]
    if owners[where] == number:
        raise OutputError(f"{first} would get {path.name} twice: give each --target class once")
    if _same_file(first, images[number]):
        raise OutputError(f"{first} is given twice ({images[number]}): give each image once")
    raise OutputError(f"{first} and {images[number]} would both be written to {path}: rename one of them, or "
                      "explain them in separate runs with different --out folders")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def _refuse_overwriting_input(path: Path, suffix: str, protected: set[tuple[int, int]]) -> None:
    for candidate in [path] if CLASS_ID_PLACEHOLDER not in suffix else _top_k_candidates(path):
        refuse_overwriting(candidate, protected)


def _top_k_candidates(path: Path) -> list[Path]:
    """The existing files a top-k output name `path` (holding CLASS_ID_PLACEHOLDER) may be."""
    head, tail = path.name.split(CLASS_ID_PLACEHOLDER)
    pattern = re.compile(re.escape(head) + r"\d+" + re.escape(tail))
    try:
        with os.scandir(path.parent) as entries:
            return [path.parent / e.name for e in entries if e.name.startswith(head) and pattern.fullmatch(e.name)]
    except OSError:
        return []


def write_outputs(rgb: np.ndarray, saliency: np.ndarray, png_path: Path, npy_path: Path) -> None:
    """The overlay and the map, both or neither."""
    write_pair(overlay(rgb, saliency), saliency, png_path, npy_path)


def write_pair(picture: np.ndarray, maps: np.ndarray, png_path: Path, npy_path: Path) -> None:
    """A picture (RGB) and its maps (float32), both files or neither: the old pair stays
    whole until both new files are complete."""
    replace_together({npy_path: encode_npy(maps.astype(np.float32)), png_path: encode_png(picture)})
