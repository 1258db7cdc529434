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

import numbers
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ..errors import OptionError
from ..explainer import Explainer
from ..images.decode import read_rgb
from ..methods import METHODS
from .annotations import Annotation, AnnotationError, ground_truth, short
from .registry import GROUND, METRICS, MODEL


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
    chosen = [METRICS[m] for m in metric_names]
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
            if any(m.truth == GROUND for m in chosen):
                truth = ground_truth(item, str(item.file))
                row.update({m.name: m.compute(result.saliency, truth) for m in chosen if m.truth == GROUND})
            if any(m.truth == MODEL for m in chosen):
                x, _ = explainer.preprocess(rgb)
                small = cv2.resize(result.saliency, (spec.width, spec.height), interpolation=cv2.INTER_AREA)

                def psi(batch: np.ndarray, target: int = item.target) -> np.ndarray:
                    return model.batch_scores(np.ascontiguousarray(batch, dtype=np.float32), [target])[:, 0]

                row.update({m.name: m.compute(psi, x, small, steps, spec.layout, explainer.batch_size)
                            for m in chosen if m.truth == MODEL})
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
    if not list_of(annotations, Annotation) or not annotations:
        raise OptionError("annotations must be a non-empty list of Annotation (see load_annotations)")
    for name, value, known in (("methods", methods, METHODS), ("metrics", metric_names, METRICS)):
        if not list_of(value, str) or not value or not set(value) <= set(known):
            raise OptionError(f"{name} must be a non-empty list of names from {', '.join(known)}, got {short(value)}")
    if not callable(on_image):
        raise OptionError(f"on_image must be callable, got {type(on_image).__name__}")


def list_of(value: object, kind: type) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, kind) for v in value)


def _aggregate(name: str, values: list) -> float:
    mean = float(np.mean(np.asarray(values, dtype=np.float64)))
    return 100.0 * mean if METRICS[name].percent else mean


