"""Stability of a method's map under harmless changes of the photo (issue 15 item 6).

For a photo, S(x) is the method's map of the photo resized to the model's input (the
Explainer's resize, cv2.INTER_AREA by default), at the model's input size (H, W) and
min-max normalised to [0, 1], as the method returns it. Each harmless change x' of
`CHANGES` gives S(x'), explained for the same class:
  resize  the photo resized with the other method (INTER_LINEAR instead of INTER_AREA,
          and the reverse when the Explainer resizes linearly);
  jpeg    the photo re-encoded as JPEG at quality 90 (cv2.imencode), decoded, resized;
  shift   the resized photo moved SHIFT = (1, 1) pixel down and right (edge pixels
          repeated); its map is moved back and both maps are compared on the pixels at
          least BORDER = 2 from the edge.
Measures, on the compared pixels:
  pearson      Pearson's r of S(x) and S(x');
  spearman     Spearman's rho (Pearson's r of the ranks, ties given their mean rank);
  sensitivity  ||S(x') - S(x)||_2 / ||S(x)||_2 (Frobenius norms);
and max_sensitivity = max over the changes of sensitivity: the max-sensitivity of Yeh
et al. (NeurIPS 2019), SENS_max = max_{x' near x} ||S(x') - S(x)||, over this finite set
of harmless changes instead of a ball of radius r, relative to ||S(x)||. A correlation
with a constant map is 1 when both maps are equal and 0 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import OptionError
from ..explainer import Explainer
from ..files.writing import replace_together
from ..images.decode import read_rgb
from ..images.model_input import resized_rgb
from .annotations import Annotation

CHANGES = ("resize", "jpeg", "shift")
MEASURES = ("pearson", "spearman", "sensitivity")
SHIFT = (1, 1)  # (down, right) pixels
BORDER = 2
JPEG_QUALITY = 90


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two maps of one shape (1 for two equal constant maps, 0 with one constant map)."""
    x, y = (np.asarray(m, dtype=np.float64).ravel() for m in (a, b))
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt((x @ x) * (y @ y))
    if scale == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(x @ y / scale)


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of the flattened values, tied values given their mean rank."""
    _, inverse, counts = np.unique(np.asarray(values).ravel(), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse.ravel()]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the ranks."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return pearson(a, b)
    return pearson(ranks(a), ranks(b))


def sensitivity(reference: np.ndarray, changed: np.ndarray) -> float:
    """||changed - reference||_2 / ||reference||_2 (inf for a zero reference that changed)."""
    reference, changed = (np.asarray(m, dtype=np.float64) for m in (reference, changed))
    norm = np.linalg.norm(reference)
    difference = float(np.linalg.norm(changed - reference))
    return difference / norm if norm > 0 else (0.0 if difference == 0 else float("inf"))


def shifted(image: np.ndarray, shift: tuple[int, int] = SHIFT) -> np.ndarray:
    """`image` (H, W, ...) moved `shift` = (down, right) pixels: out[y, x] = image[y - dy, x - dx],
    the edge rows and columns repeated where that falls outside."""
    height, width = image.shape[:2]
    rows = np.clip(np.arange(height) - shift[0], 0, height - 1)
    cols = np.clip(np.arange(width) - shift[1], 0, width - 1)
    return image[rows][:, cols]


def aligned(reference: np.ndarray, changed: np.ndarray, shift: tuple[int, int] = (0, 0),
            border: int = BORDER) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of `reference` at least `border` from the edge, and those of `changed`
    (the map of the photo moved by `shift`) moved back onto them."""
    height, width = reference.shape
    dy, dx = shift
    if border < max(abs(dy), abs(dx)) or 2 * border >= min(height, width):
        raise ValueError(f"border {border} must cover the shift {shift} and leave pixels of a {height}x{width} map")
    return (reference[border:height - border, border:width - border],
            changed[border + dy:height - border + dy, border + dx:width - border + dx])


def jpeg_reencoded(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """The RGB photo encoded as JPEG at `quality` with cv2.imencode and decoded again."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OptionError("cv2 could not encode the photo as JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


def changed_inputs(explainer: Explainer, rgb: np.ndarray, changes: Sequence[str] = CHANGES
                   ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, tuple[int, int]]]]:
    """The photo at the model's size, and for each change its changed version at the
    model's size with the shift its map must be moved back by."""
    spec, own = explainer.info.input, explainer.resize
    base = resized_rgb(rgb, spec, own)
    makers: dict[str, Callable[[], tuple[np.ndarray, tuple[int, int]]]] = {
        "resize": lambda: (resized_rgb(rgb, spec, "linear" if own == "area" else "area"), (0, 0)),
        "jpeg": lambda: (resized_rgb(jpeg_reencoded(rgb), spec, own), (0, 0)),
        "shift": lambda: (shifted(base, SHIFT), SHIFT),
    }
    return base, {change: makers[change]() for change in changes}


def stability(explainer: Explainer, photo: np.ndarray | str | Path, method: str = "sise", target: int | None = None,
              changes: Sequence[str] = CHANGES, **options: object) -> dict[str, object]:
    """The measures of the module docstring for one photo ((H, W, 3) uint8 RGB or a path):
    {"target": c, "changes": {change: {"pearson", "spearman", "sensitivity"}},
    "max_sensitivity": float}. `options` are the method's options."""
    if isinstance(changes, str) or not changes or not set(changes) <= set(CHANGES):
        raise OptionError(f"changes must be a non-empty list from {', '.join(CHANGES)}, got {changes!r:.60}")
    rgb = photo if isinstance(photo, np.ndarray) else read_rgb(photo)
    base, inputs = changed_inputs(explainer, rgb, changes)
    reference = explainer.explain(base, target, method=method, **options)
    found: dict[str, dict[str, float]] = {}
    for change, (image, shift) in inputs.items():
        changed = explainer.explain(image, reference.target, method=method, **options).saliency
        a, b = aligned(reference.saliency, changed, shift)
        found[change] = {"pearson": pearson(a, b), "spearman": spearman(a, b), "sensitivity": sensitivity(a, b)}
    return {"target": reference.target, "changes": found,
            "max_sensitivity": max(v["sensitivity"] for v in found.values())}


def evaluate_stability(explainer: Explainer, annotations: Sequence[Annotation], methods: Sequence[str],
                       changes: Sequence[str] = CHANGES, on_image: Callable[[str], None] = lambda s: None,
                       **options: object) -> dict[str, dict[str, object]]:
    """{method: {"changes": {change: {measure: mean over the images}}, "max_sensitivity":
    mean over the images of the per-image max-sensitivity, "images": [per image]}}."""
    report: dict[str, dict[str, object]] = {}
    for method in methods:
        rows = []
        for item in annotations:
            on_image(f"{method} {item.file.name}")
            rows.append({"file": item.file.name, **stability(explainer, item.file, method, item.target, changes,
                                                             **options)})
        report[method] = {
            "changes": {c: {m: float(np.mean([r["changes"][c][m] for r in rows])) for m in MEASURES} for c in changes},
            "max_sensitivity": float(np.mean([r["max_sensitivity"] for r in rows])),
            "images": rows,
        }
    return report


def stability_table(report: dict[str, dict[str, object]]) -> str:
    """Markdown: methods x changes, mean Pearson r, Spearman rho and sensitivity per
    change, and the mean max-sensitivity."""
    changes = list(next(iter(report.values()))["changes"]) if report else []
    head = ["method"] + [f"{c} {m}" for c in changes for m in ("r", "rho", "sens")] + ["max-sensitivity"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in report.items():
        cells = [method] + [f"{entry['changes'][c][m]:.3f}" for c in changes for m in MEASURES]
        lines.append("| " + " | ".join(cells + [f"{entry['max_sensitivity']:.3f}"]) + " |")
    return "\n".join(lines)


def write_stability(report: dict[str, dict[str, object]], out: Path) -> tuple[Path, Path]:
    """stability.json (per image too) and stability.md (the table), both or neither."""
    json_path, table_path = stability_paths(out)
    replace_together({json_path: json.dumps(report, indent=2).encode("utf-8"),
                      table_path: (stability_table(report) + "\n").encode("utf-8")})
    return json_path, table_path


def stability_paths(out: Path) -> tuple[Path, Path]:
    """(stability.json, stability.md) in `out`."""
    return out / "stability.json", out / "stability.md"
