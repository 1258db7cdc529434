"""CONTRIBUTING.md's recipe for a metric, followed by a test: a toy metric registers
itself and `evaluate`, its report and the command line's `--metrics` take it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from onnx_sise import Explainer
from onnx_sise.cli import build_parser
from onnx_sise.evaluation import GROUND, METRICS, Metric, register
from onnx_sise.evaluation.annotations import load_annotations
from onnx_sise.evaluation.evaluate import evaluate
from onnx_sise.evaluation.report import table


def mass_inside(saliency: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of the map's pixels above its mean that fall in the ground truth."""
    high = saliency > saliency.mean()
    return float((high & truth).sum() / max(1, high.sum()))


@pytest.fixture
def toy_metric() -> Iterator[Metric]:
    metric = register(Metric("mass", "Mass inside (%)", GROUND, mass_inside))
    try:
        yield metric
    finally:
        del METRICS["mass"]


def test_a_toy_metric_is_evaluated_reported_and_on_the_command_line(toy_metric: Metric, lite0_path: Path,
                                                                     photos: Path, tmp_path: Path) -> None:
    shutil.copy(photos / "coffee.png", tmp_path)
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"images": [{"file": "coffee.png", "target": 967, "boxes": [[170, 15, 420, 305]]}]}))
    explainer = Explainer(lite0_path)
    annotations = load_annotations(tmp_path / "annotations.json", tmp_path, 1000, need_truth=True)
    report = evaluate(explainer, annotations, ["gradcam"], ["mass", "ebpg"])
    saliency = explainer.explain(photos / "coffee.png", target=967, method="gradcam").saliency
    truth = np.zeros(saliency.shape, bool)
    truth[15:305, 170:420] = True
    assert report["gradcam"]["metrics"]["mass"] == pytest.approx(100 * mass_inside(saliency, truth))
    assert "Mass inside (%)" in table(report, ["mass", "ebpg"])
    args = build_parser().parse_args(["evaluate", "m.onnx", "--images", "i", "--annotations", "a", "--metrics", "mass"])
    assert args.metrics == ["mass"]


def test_a_metric_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register(Metric("ebpg", "again", GROUND, mass_inside))
