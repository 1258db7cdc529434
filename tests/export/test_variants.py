"""fp16 and int8 variants of the masked-pass sub-graph: they load beside the float32
explainable ONNX, score like it, and give maps that correlate with its maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference

import onnx_sise
from onnx_sise.errors import ExportError, ModelError
from onnx_sise_export import calibration_batches, write_scoring_variant


@pytest.mark.parametrize("precision,score_atol,min_r", [("fp16", 5e-3, 0.99), ("int8", 0.1, 0.8)])
def test_variant_scores_and_maps_follow_float32(lite0_path: Path, photos: Path, tmp_path: Path, precision: str,
                                                score_atol: float, min_r: float) -> None:
    fp32 = onnx_sise.Explainer(lite0_path, threads=2)
    calibration = calibration_batches(fp32, [photos / n for n in ("chelsea.png", "astronaut.png", "rocket.jpg")])
    variant_path = write_scoring_variant(lite0_path, tmp_path / f"lite0.{precision}.onnx", precision, calibration)
    variant = onnx_sise.Explainer(lite0_path, threads=2, scoring_model=variant_path)
    assert variant.model.scoring_precision == precision
    x, _ = fp32.preprocess(photos / "coffee.png")
    masks = np.random.default_rng(1).uniform(size=(6, *x.shape[1:])).astype(np.float32)
    batch = x[None] * masks[:, None]
    np.testing.assert_allclose(variant.model.batch_scores(batch, [967, 504]), fp32.model.batch_scores(batch, [967, 504]),
                               atol=score_atol)
    expected = fp32.explain(photos / "coffee.png", target=967)
    actual = variant.explain(photos / "coffee.png", target=967)
    assert actual.passes == expected.passes
    assert reference.pearson(actual.saliency, expected.saliency) >= min_r


def test_variants_are_checked(lite0_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a scoring variant"):
        onnx_sise.Explainer(lite0_path, scoring_model=lite0_path)
    with pytest.raises(ExportError, match="calibration"):
        write_scoring_variant(lite0_path, tmp_path / "x.onnx", "int8")
    with pytest.raises(ExportError, match="precision must be"):
        write_scoring_variant(lite0_path, tmp_path / "x.onnx", "int4")
    assert not (tmp_path / "x.onnx").exists()
