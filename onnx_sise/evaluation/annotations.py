"""The annotation file of `evaluate` (JSON):
    {"images": [{"file": "coffee.png", "target": 967,
                 "boxes": [[x0, y0, x1, y1], ...],      # pixels, x1/y1 exclusive; optional
                 "mask": "coffee_mask.png"}]}           # non-zero = object; optional
`file` and `mask` are relative to the images directory and stay inside it. The ground
truth G is the union of the boxes and the mask (non-zero in any channel); ground-truth
metrics need at least one of them. Every entry is checked by type and against the
images before any work. PASCAL VOC XML and COCO JSON boxes are read too
(foreign_annotations.py: load_any_annotations)."""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SiseError
from ..files.reading import read_regular
from ..images.decode import read_rgb


@dataclass(frozen=True)
class Annotation:
    """One annotated image: its file, class, its size (height, width) when it was checked,
    and its ground truth as stated (boxes in pixels, x1/y1 exclusive; a mask file); the
    truth mask itself is made when the image is evaluated (ground_truth)."""

    file: Path
    target: int
    size: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    mask: Path | None = None

    @property
    def has_truth(self) -> bool:
        return bool(self.boxes) or self.mask is not None


class AnnotationError(SiseError):
    """The annotation file is malformed or does not match the images."""


MAX_ANNOTATION_BYTES = 64 << 20
MAX_ANNOTATED_IMAGES = 100_000
MAX_BOXES = 1000  # per image


def load_annotations(path: Path, images: Path, num_classes: int, need_truth: bool) -> list[Annotation]:
    """Every entry checked by type and against the images before any work: files exist
    inside the images directory and decode, boxes lie inside their image, classes are in
    range. Any fault of the file is an AnnotationError (or the ImageError of a photo).
    need_truth: ground-truth metrics are asked for, so at least one image must have boxes
    or a mask; they are measured on the images that have them."""
    return checked_entries(_entries(path), path, images, num_classes, need_truth)


def checked_entries(entries: list, path: Path, images: Path, num_classes: int, need_truth: bool) -> list[Annotation]:
    """load_annotations' checks of entries (dicts of the annotation file's form) read from `path`."""
    annotations = []
    for n, entry in enumerate(entries):
        where = f"{path}: image #{n}"
        if not isinstance(entry, dict) or "file" not in entry or "target" not in entry:
            raise AnnotationError(f"{where} needs 'file' and 'target'")
        file = _inside(images, entry["file"], where, "image")
        size = read_rgb(file).shape[:2]
        target = entry["target"]
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_classes:
            raise AnnotationError(f"{where}: class {short(target)} is unknown to this model (0..{num_classes - 1})")
        mask = _inside(images, entry["mask"], where, "mask") if "mask" in entry else None
        annotation = Annotation(file, target, size, _boxes(entry, size, where), mask)
        if mask is not None:
            ground_truth(annotation, where)  # the mask decodes and has the image's size
        annotations.append(annotation)
    if need_truth and not any(a.has_truth for a in annotations):
        raise AnnotationError(f"no image of {path} has boxes or a mask, which the ground-truth metrics need: add "
                              "them, or choose model-truth metrics only (--metrics drop,increase,deletion,insertion)")
    return annotations


def read_json(path: Path) -> object:
    """The parsed JSON of an annotation file (bounded, regular files only)."""
    try:
        text = read_regular(path, "annotation file", AnnotationError, MAX_ANNOTATION_BYTES).decode("utf-8-sig")
        return json.loads(text)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file not found: {path}") from None
    except IsADirectoryError:
        raise AnnotationError(f"{path} is a directory, not an annotation file") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        raise AnnotationError(f"{path} is not an annotation file ({reason}): see `evaluate --help` for the "
                              "format") from None


def _entries(path: Path) -> list:
    raw = read_json(path)
    entries = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise AnnotationError(f"{path} lists no images: it needs {{\"images\": [{{\"file\": ..., \"target\": ...}}]}}, "
                              "see `evaluate --help`")
    if len(entries) > MAX_ANNOTATED_IMAGES:
        raise AnnotationError(f"{path} lists {len(entries)} images, more than {MAX_ANNOTATED_IMAGES}: split it")
    return entries


def _inside(images: Path, name: object, where: str, what: str) -> Path:
    """images / name for a relative name that stays inside `images` and names a file."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise AnnotationError(f"{where}: {what} {short(name)} is not a file name")
    file = images / name
    try:
        inside = not Path(name).is_absolute() and file.resolve().is_relative_to(images.resolve())
    except (OSError, RuntimeError):  # a symbolic-link loop
        inside = False
    if not inside:
        raise AnnotationError(f"{where}: {what} {short(name)} lies outside the images directory {images}")
    try:
        regular = stat.S_ISREG(file.stat().st_mode)
    except FileNotFoundError:
        raise AnnotationError(f"{where}: {what} {file} not found") from None
    except OSError as exc:
        raise AnnotationError(f"{where}: {what} {file}: {exc.strerror}") from None
    if not regular:
        raise AnnotationError(f"{where}: {what} {file} is not a regular file (a directory, pipe or device)")
    return file


def short(value: object) -> str:
    """repr(value), cut to 60 characters: how an error message quotes a stranger's value."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _boxes(entry: dict, size: tuple[int, int], where: str) -> tuple[tuple[int, int, int, int], ...]:
    height, width = size
    boxes = entry.get("boxes", [])
    if not isinstance(boxes, list):
        raise AnnotationError(f"{where}: boxes must be a list of [x0, y0, x1, y1], got {short(boxes)}")
    if len(boxes) > MAX_BOXES:
        raise AnnotationError(f"{where} has {len(boxes)} boxes, more than {MAX_BOXES}: use a mask")
    found = []
    for box in boxes:
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise AnnotationError(f"{where}: box {short(box)} is not [x0, y0, x1, y1] in pixels")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise AnnotationError(f"{where}: box {short(box)} lies outside the {width}x{height} image")
        found.append((x0, y0, x1, y1))
    return tuple(found)


def ground_truth(annotation: Annotation, where: str) -> np.ndarray:
    """G: the union of the boxes and the mask (non-zero in any channel), (H, W) bool."""
    height, width = annotation.size
    truth = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in annotation.boxes:
        truth[y0:y1, x0:x1] = True
    if annotation.mask is not None:
        mask = read_rgb(annotation.mask).any(axis=2)
        if mask.shape != truth.shape:
            raise AnnotationError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}")
        truth |= mask
    return truth
