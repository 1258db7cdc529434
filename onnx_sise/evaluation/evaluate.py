"""`evaluate`: methods x metrics over annotated images, one session per model.

Annotation file (JSON):
    {"images": [{"file": "coffee.png", "target": 967,
                 "boxes": [[x0, y0, x1, y1], ...],      # pixels, x1/y1 exclusive; optional
                 "mask": "coffee_mask.png"}]}           # non-zero = object; optional
`file` and `mask` are relative to the images directory and stay inside it. The ground
truth G is the union of the boxes and the mask (non-zero in any channel); ground-truth
metrics are measured on the images that have one of them (at least one must), model-truth
metrics on every image. `--steps` is at most the model's pixel count.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ..errors import OptionError
from ..explainer import Explainer
from ..images.decode import read_rgb
from ..methods import METHODS
from .annotations import Annotation, AnnotationError, ground_truth, short
from .registry import GROUND, METRICS, MODEL, Metric
from .statistics import bootstrap_interval


def evaluate(explainer: Explainer, annotations: Sequence[Annotation], methods: Sequence[str],
             metric_names: Sequence[str], steps: int = 100, on_image: Callable[[str], None] = lambda s: None,
             **options: object) -> dict[str, dict[str, object]]:
    """{method: {"metrics": {name: mean}, "intervals": {name: [low, high]}, "seconds_per_image",
    "passes_per_image", "head_passes_per_image", "images": [per-image rows]}}; percentages for EBPG, mIoU, Bbox, pointing
    game, Drop and Increase, AUCs as fractions; intervals are 95 % bootstrap intervals of the
    means (statistics.bootstrap_interval)."""
    check_arguments(explainer, annotations, methods, metric_names, on_image)
    check_steps(explainer, steps)
    report: dict[str, dict[str, object]] = {}
    for method in methods:
        rows = []
        for item in annotations:
            on_image(f"{method} {item.file.name}")
            rows.append(image_row(explainer, item, method, metric_names, steps, options))
        report[method] = summarised(rows, metric_names)
    return report


def check_steps(explainer: Explainer, steps: object) -> None:
    spec = explainer.info.input
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= spec.height * spec.width:
        raise OptionError(f"steps must be an integer in [1, {spec.height * spec.width}] (the model's pixel count: "
                          f"more steps change nothing), got {steps!r}")


def image_row(explainer: Explainer, item: Annotation, method: str, metric_names: Sequence[str], steps: int,
              options: dict[str, object]) -> dict[str, object]:
    """One image's row of the report: its file, target, seconds, passes and every metric
    of `metric_names` measured on `method`'s map (the work evaluate does per image, and
    what onnx_sise.batch runs on Ray actors)."""
    rgb = read_rgb(item.file)
    if rgb.shape[:2] != item.size:
        raise AnnotationError(f"{item.file} changed since the annotations were checked (now "
                              f"{rgb.shape[1]}x{rgb.shape[0]}, was {item.size[1]}x{item.size[0]}): run again")
    result = explainer.explain(rgb, target=item.target, method=method, **options)
    chosen = [METRICS[m] for m in metric_names]
    return {"file": item.file.name, "target": item.target, "seconds": result.seconds, "passes": result.passes,
            "head_passes": int(result.details.get("head_passes", 0)),
            **map_metrics(explainer, item, rgb, result.saliency, chosen, steps)}


def summarised(rows: Sequence[dict[str, object]], metric_names: Sequence[str]) -> dict[str, object]:
    """One method's entry of the report from its per-image rows (each with "seconds",
    "passes", optionally "head_passes" (feature maps run through a tap's head) and the value of every metric it was measured on: ground-truth metrics only on
    images with boxes or a mask): means, 95 % intervals, images measured, cost per image,
    the rows."""
    values = {m: np.asarray([r[m] for r in rows if m in r], dtype=np.float64) for m in metric_names}
    return {
        "metrics": {m: _scaled(m, float(values[m].mean())) for m in metric_names},
        "intervals": {m: [_scaled(m, end) for end in bootstrap_interval(values[m])] for m in metric_names},
        "images_measured": {m: int(values[m].size) for m in metric_names},
        "seconds_per_image": float(np.mean([r["seconds"] for r in rows])),
        "passes_per_image": float(np.mean([r["passes"] for r in rows])),
        "head_passes_per_image": float(np.mean([r.get("head_passes", 0) for r in rows])),
        "images": list(rows),
    }


def map_metrics(explainer: Explainer, item: Annotation, rgb: np.ndarray, saliency: np.ndarray,
                chosen: Sequence[Metric], steps: int) -> dict[str, float | bool]:
    """Every metric of `chosen` for one map (H, W) of the photo `rgb` (the annotation's
    file, decoded): ground-truth metrics at the photo's size (when the image has boxes or a
    mask), model-truth ones on the model input with the map resized to it."""
    values: dict[str, float | bool] = {}
    if item.has_truth and any(m.truth == GROUND for m in chosen):
        truth = ground_truth(item, str(item.file))
        values.update({m.name: m.compute(saliency, truth) for m in chosen if m.truth == GROUND})
    if any(m.truth == MODEL for m in chosen):
        spec = explainer.info.input
        x, _ = explainer.preprocess(rgb)
        small = cv2.resize(saliency, (spec.width, spec.height), interpolation=cv2.INTER_AREA)

        def psi(batch: np.ndarray, target: int = item.target) -> np.ndarray:
            return explainer.model.batch_scores(np.ascontiguousarray(batch, dtype=np.float32), [target])[:, 0]

        values.update({m.name: m.compute(psi, x, small, steps, spec.layout, explainer.batch_size)
                       for m in chosen if m.truth == MODEL})
    return values


def check_arguments(explainer: object, annotations: object, methods: object, metric_names: object,
                     on_image: object) -> None:
    """evaluate()'s arguments by type, each wrong one an OptionError (one line)."""
    if not isinstance(explainer, Explainer):
        raise OptionError(f"explainer must be an onnx_sise.Explainer, got {type(explainer).__name__}")
    if not list_of(annotations, Annotation) or not annotations:
        raise OptionError("annotations must be a non-empty list of Annotation (see load_annotations)")
    for name, value, known in (("methods", methods, METHODS), ("metrics", metric_names, METRICS)):
        if not list_of(value, str) or not value or not set(value) <= set(known):
            raise OptionError(f"{name} must be a non-empty list of names from {', '.join(known)}, got {short(value)}")
    if not callable(on_image):
        raise OptionError(f"on_image must be callable, got {type(on_image).__name__}")


def list_of(value: object, kind: type) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, kind) for v in value)


def _scaled(name: str, value: float) -> float:
    return 100.0 * value if METRICS[name].percent else value


