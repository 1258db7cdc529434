"""RISE and Score-CAM on the masked-pass engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference

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


@pytest.mark.parametrize(("size", "cells"), [((224, 224), 7), ((240, 320), 7), ((17, 5), 3)])
def test_rise_masks_are_the_upsampled_grids_cropped_at_their_shifts(size: tuple[int, int], cells: int) -> None:
    """RISE's definition (Petsiuk et al. 2018, section 3.2): each s x s grid upsampled
    bilinearly to (s + 1) C_H x (s + 1) C_W and cropped at a shift in [0, C); the same
    draws from the seeded generator, resized by the NumPy reference."""
    height, width = size
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    rng = np.random.default_rng(5)
    expected = []
    for n in (16, 16, 8):
        grids = (rng.random((n, cells, cells)) < 0.5).astype(np.float32)
        shifts = rng.integers(0, [cell_h, cell_w], size=(n, 2))
        up = reference.upsample_bilinear(grids, (cells + 1) * cell_h, (cells + 1) * cell_w)
        expected += [up[i, y:y + height, x:x + width] for i, (y, x) in enumerate(shifts)]
    ours = np.concatenate([m for m, _ in rise_masks(40, size, 16, cells=cells, p=0.5, seed=5)])
    np.testing.assert_allclose(ours, np.stack(expected), rtol=0, atol=1e-6)


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
