"""`evaluate`: methods x metrics over annotated images, one session per model.

Annotation file (JSON):
    {"images": [{"file": "coffee.png", "target": 967,
                 "boxes": [[x0, y0, x1, y1], ...],      # pixels, x1/y1 exclusive; optional
                 "mask": "coffee_mask.png"}]}           # non-zero = object; optional
`file` and `mask` are relative to the images directory and stay inside it. The ground
truth G is the union of the boxes and the mask (non-zero in any channel); ground-truth
metrics need at least one of them. `--steps` is at most the model's pixel count.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import metrics
from .errors import OptionError, SiseError
from .explainer import Explainer
from .image_io import read_rgb
from .methods import METHODS
from .output_files import replace_together
from .regular_files import read_regular

PAPER_METRICS = {
    "ebpg": "EBPG (%)", "miou": "mIoU top 20% (%)", "bbox": "Bbox (%)", "pointing": "Pointing game (%)",
    "drop": "Drop (%)", "increase": "Increase (%)", "deletion": "Deletion AUC", "insertion": "Insertion AUC",
}


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
    range. Any fault of the file is an AnnotationError (or the ImageError of a photo)."""
    entries = _entries(path)
    annotations = []
    for n, entry in enumerate(entries):
        where = f"{path}: image #{n}"
        if not isinstance(entry, dict) or "file" not in entry or "target" not in entry:
            raise AnnotationError(f"{where} needs 'file' and 'target'")
        file = _inside(images, entry["file"], where, "image")
        size = read_rgb(file).shape[:2]
        target = entry["target"]
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_classes:
            raise AnnotationError(f"{where}: class {_short(target)} is unknown to this model (0..{num_classes - 1})")
        mask = _inside(images, entry["mask"], where, "mask") if "mask" in entry else None
        annotation = Annotation(file, target, size, _boxes(entry, size, where), mask)
        if mask is not None:
            ground_truth(annotation, where)  # the mask decodes and has the image's size
        if need_truth and not annotation.has_truth:
            raise AnnotationError(f"{where} has no boxes or mask, which the ground-truth metrics need")
        annotations.append(annotation)
    return annotations


def _entries(path: Path) -> list:
    try:
        text = read_regular(path, "annotation file", AnnotationError, MAX_ANNOTATION_BYTES).decode("utf-8-sig")
        raw = json.loads(text)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file not found: {path}") from None
    except IsADirectoryError:
        raise AnnotationError(f"{path} is a directory, not an annotation file") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        raise AnnotationError(f"{path} is not an annotation file ({reason}): see `evaluate --help` for the "
                              "format") from None
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
        raise AnnotationError(f"{where}: {what} {_short(name)} is not a file name")
    file = images / name
    try:
        inside = not Path(name).is_absolute() and file.resolve().is_relative_to(images.resolve())
    except (OSError, RuntimeError):  # a symbolic-link loop
        inside = False
    if not inside:
        raise AnnotationError(f"{where}: {what} {_short(name)} lies outside the images directory {images}")
    try:
        regular = stat.S_ISREG(file.stat().st_mode)
    except FileNotFoundError:
        raise AnnotationError(f"{where}: {what} {file} not found") from None
    except OSError as exc:
        raise AnnotationError(f"{where}: {what} {file}: {exc.strerror}") from None
    if not regular:
        raise AnnotationError(f"{where}: {what} {file} is not a regular file (a directory, pipe or device)")
    return file


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _boxes(entry: dict, size: tuple[int, int], where: str) -> tuple[tuple[int, int, int, int], ...]:
    height, width = size
    boxes = entry.get("boxes", [])
    if not isinstance(boxes, list):
        raise AnnotationError(f"{where}: boxes must be a list of [x0, y0, x1, y1], got {_short(boxes)}")
    if len(boxes) > MAX_BOXES:
        raise AnnotationError(f"{where} has {len(boxes)} boxes, more than {MAX_BOXES}: use a mask")
    found = []
    for box in boxes:
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise AnnotationError(f"{where}: box {_short(box)} is not [x0, y0, x1, y1] in pixels")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise AnnotationError(f"{where}: box {_short(box)} lies outside the {width}x{height} image")
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


def evaluate(explainer: Explainer, annotations: Sequence[Annotation], methods: Sequence[str],
             metric_names: Sequence[str], steps: int = 100, on_image: Callable[[str], None] = lambda s: None,
             **options: object) -> dict[str, dict[str, object]]:
    """{method: {"metrics": {name: value}, "seconds_per_image", "passes_per_image", "images": [...]}};
    percentages for EBPG, mIoU, Bbox, pointing game, Drop and Increase, AUCs as fractions."""
    _check_arguments(explainer, annotations, methods, metric_names, on_image)
    spec = explainer.info.input
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= spec.height * spec.width:
        raise OptionError(f"steps must be an integer in [1, {spec.height * spec.width}] (the model's pixel count: "
                          f"more steps change nothing), got {steps!r}")
    model = explainer.model
    report: dict[str, dict[str, object]] = {}
    for method in methods:
        rows = []
        for item in annotations:
            on_image(f"{method} {item.file.name}")
            rgb = read_rgb(item.file)
            if rgb.shape[:2] != item.size:
                raise AnnotationError(f"{item.file} changed since the annotations were checked (now "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}, was {item.size[1]}x{item.size[0]}): run again")
            result = explainer.explain(rgb, target=item.target, method=method, **options)
            row: dict[str, object] = {"file": item.file.name, "target": item.target, "seconds": result.seconds,
                                      "passes": result.passes}
            if any(m in metrics.GROUND_TRUTH_METRICS for m in metric_names):
                row.update(_ground_truth(result.saliency, ground_truth(item, str(item.file)), metric_names))
            if any(m in metrics.MODEL_TRUTH_METRICS for m in metric_names):
                x, _ = explainer.preprocess(rgb)
                small = cv2.resize(result.saliency, (spec.width, spec.height), interpolation=cv2.INTER_AREA)

                def psi(batch: np.ndarray, target: int = item.target) -> np.ndarray:
                    return model.batch_scores(np.ascontiguousarray(batch, dtype=np.float32), [target])[:, 0]

                row.update(_model_truth(psi, x, small, metric_names, steps, spec.layout, explainer.batch_size))
            rows.append(row)
        report[method] = {
            "metrics": {m: _aggregate(m, [r[m] for r in rows]) for m in metric_names},
            "seconds_per_image": float(np.mean([r["seconds"] for r in rows])),
            "passes_per_image": float(np.mean([r["passes"] for r in rows])),
            "images": rows,
        }
    return report


def _check_arguments(explainer: object, annotations: object, methods: object, metric_names: object,
                     on_image: object) -> None:
    """evaluate()'s arguments by type, each wrong one an OptionError (one line)."""
    if not isinstance(explainer, Explainer):
        raise OptionError(f"explainer must be an onnx_sise.Explainer, got {type(explainer).__name__}")
    if not _list_of(annotations, Annotation) or not annotations:
        raise OptionError("annotations must be a non-empty list of Annotation (see load_annotations)")
    for name, value, known in (("methods", methods, METHODS), ("metrics", metric_names, metrics.METRICS)):
        if not _list_of(value, str) or not value or not set(value) <= set(known):
            raise OptionError(f"{name} must be a non-empty list of names from {', '.join(known)}, got {_short(value)}")
    if not callable(on_image):
        raise OptionError(f"on_image must be callable, got {type(on_image).__name__}")


def _list_of(value: object, kind: type) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, kind) for v in value)


def _ground_truth(saliency: np.ndarray, truth: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if "ebpg" in names:
        values["ebpg"] = metrics.energy_pointing_game(saliency, truth)
    if "miou" in names:
        values["miou"] = metrics.top_fraction_iou(saliency, truth)
    if "bbox" in names:
        values["bbox"] = metrics.bbox_score(saliency, truth)
    if "pointing" in names:
        values["pointing"] = metrics.pointing_game_hit(saliency, truth)
    return values


def _model_truth(psi: metrics.Scores, x: np.ndarray, saliency: np.ndarray, names: Sequence[str], steps: int,
                 layout: str, batch: int) -> dict[str, object]:
    values: dict[str, object] = {}
    if "drop" in names or "increase" in names:
        drop, increase = metrics.drop_and_increase(psi, x, saliency, layout)
        values.update({"drop": drop, "increase": increase})
    if "deletion" in names:
        values["deletion"] = metrics.deletion_auc(psi, x, saliency, steps, layout, batch)
    if "insertion" in names:
        values["insertion"] = metrics.insertion_auc(psi, x, saliency, steps, layout, batch)
    return {k: v for k, v in values.items() if k in names}


def _aggregate(name: str, values: list) -> float:
    mean = float(np.mean(np.asarray(values, dtype=np.float64)))
    return mean if name in ("deletion", "insertion") else 100.0 * mean


def table(report: dict[str, dict[str, object]], metric_names: Sequence[str]) -> str:
    """Markdown table: methods x metrics, seconds and masked passes per image."""
    head = ["method"] + [PAPER_METRICS[m] for m in metric_names] + ["s / image", "passes / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in report.items():
        cells = [method] + [f"{entry['metrics'][m]:.3f}" if m in ("deletion", "insertion")
                            else f"{entry['metrics'][m]:.1f}" for m in metric_names]
        cells += [f"{entry['seconds_per_image']:.2f}", f"{entry['passes_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: dict[str, dict[str, object]], metric_names: Sequence[str], out: Path) -> tuple[Path, Path]:
    """evaluation.json (everything, per image too) and evaluation.csv (the table), both or neither."""
    json_path, csv_path = out / "evaluation.json", out / "evaluation.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", *metric_names, "seconds_per_image", "passes_per_image"])
    for method, entry in report.items():
        writer.writerow([method, *(entry["metrics"][m] for m in metric_names), entry["seconds_per_image"],
                         entry["passes_per_image"]])
    replace_together({json_path: json.dumps(report, indent=2).encode("utf-8"),
                      csv_path: buffer.getvalue().encode("utf-8")})
    return json_path, csv_path
