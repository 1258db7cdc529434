"""RISE and Score-CAM on the masked-pass engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnx_sise import Explainer
from onnx_sise.methods.perturbation import rise_masks


def test_rise_masks_follow_the_generator_and_are_seeded() -> None:
    first = np.concatenate([m for m, _ in rise_masks(50, (64, 48), 16, cells=4, p=0.5, seed=3)])
    again = np.concatenate([m for m, _ in rise_masks(50, (64, 48), 16, cells=4, p=0.5, seed=3)])
    other = np.concatenate([m for m, _ in rise_masks(50, (64, 48), 16, cells=4, p=0.5, seed=4)])
    assert first.shape == (50, 64, 48) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert abs(first.mean() - 0.5) < 0.1


def test_rise_and_score_cam_on_a_real_photo(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path)
    rise = explainer.explain(photos / "coffee.png", method="rise", rise_masks=256, seed=1)
    assert rise.passes == 256 and rise.target == 967
    again = explainer.explain(photos / "coffee.png", method="rise", rise_masks=256, seed=1)
    np.testing.assert_array_equal(rise.saliency, again.saliency)
    score_cam = explainer.explain(photos / "coffee.png", method="score-cam")
    (cam,) = score_cam.block_maps.values()
    assert cam.shape == (7, 7) and 0 < score_cam.passes <= 1280
    for result in (rise, score_cam):
        assert result.saliency.shape == (400, 600) and 0 <= result.saliency.min() and result.saliency.max() > 0.99
    two = explainer.explain_targets(photos / "coffee.png", [967, 968], method="rise", rise_masks=256, seed=1)
    assert two[0].passes == 256
    np.testing.assert_allclose(two[0].saliency, rise.saliency, atol=1e-6)
