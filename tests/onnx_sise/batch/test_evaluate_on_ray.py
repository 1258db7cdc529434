"""evaluate's report on Ray actors (onnx_sise.batch.evaluate: a unique file name, beside
evaluation/test_evaluate.py) equals evaluate's own, image by image (but the seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from onnx_sise import Explainer  # noqa: E402
from onnx_sise.batch.evaluate import evaluate_on_ray  # noqa: E402
from onnx_sise.cli import main  # noqa: E402
from onnx_sise.evaluation.annotations import load_annotations  # noqa: E402
from onnx_sise.evaluation.evaluate import evaluate  # noqa: E402

pytestmark = pytest.mark.slow
METRICS = ["ebpg", "bbox", "drop", "deletion"]


def without_seconds(report: dict) -> dict:
    return {method: {**entry, "seconds_per_image": None,
                     "images": [{k: v for k, v in row.items() if k != "seconds"} for row in entry["images"]]}
            for method, entry in report.items()}


def test_evaluate_on_ray_equals_evaluate(lite0_path: Path, photos: Path, ray_cluster: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"images": [
        {"file": "coffee.png", "target": 967, "boxes": [[50, 20, 350, 300]]},
        {"file": "chelsea.png", "target": 281, "boxes": [[100, 20, 400, 300]]},
        {"file": "rocket.jpg", "target": 812}]}))
    annotations = load_annotations(notes, photos, 1000, True)
    expected = evaluate(Explainer(lite0_path, threads=1), annotations, ["gradcam", "wgradcam"], METRICS, steps=8)
    found = evaluate_on_ray(lite0_path, annotations, ["gradcam", "wgradcam"], METRICS, steps=8, threads=1)
    assert without_seconds(found) == without_seconds(expected)

    out = tmp_path / "out"
    assert main(["evaluate", str(lite0_path), "--images", str(photos), "--annotations", str(notes), "--methods",
                 "gradcam", "--metrics", "ebpg,drop", "--steps", "8", "--threads", "1", "--address", "local",
                 "--out", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["gradcam"]["metrics"]["ebpg"] == pytest.approx(expected["gradcam"]["metrics"]["ebpg"], abs=1e-9)
