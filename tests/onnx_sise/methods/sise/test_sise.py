"""SISE and Ada-SISE selection, and several targets sharing masked passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference

from onnx_sise import Explainer
from onnx_sise.methods.sise.masks import distinct_maps
from onnx_sise.methods.sise.method import adaptive_threshold, select_adaptive


def _between_class_variance(values: np.ndarray, i: int) -> float:
    """Total variance minus the weighted within-class variances, split after i values."""
    low, high = values[:i], values[i:]
    within = (low.size * low.var() + high.size * high.var()) / values.size
    return float(values.var() - within)


def test_otsu_rule_maximises_between_class_variance() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        values = np.sort(np.concatenate([rng.uniform(0, 0.3, rng.integers(2, 40)), rng.uniform(0.5, 1, rng.integers(1, 10))]))
        best = max(range(1, values.size), key=lambda i: _between_class_variance(values, i))
        assert adaptive_threshold(values) == values[best - 1]


def test_adaptive_selection_by_hand() -> None:
    alpha = np.array([-2.0, 0.2, 0.24, 0.3, 1.6, 1.8, 2.0])
    # v = alpha / 2 = [-1, .1, .12, .15, .8, .9, 1]; Otsu splits {.1, .12, .15} | {.8, .9, 1}: mu = .15
    assert adaptive_threshold(np.array([0.1, 0.12, 0.15, 0.8, 0.9, 1.0])) == pytest.approx(0.15)
    assert select_adaptive(alpha).tolist() == [4, 5, 6]
    assert select_adaptive(np.array([-1.0, 3.0])).tolist() == [1]
    assert select_adaptive(np.array([-1.0, -3.0])).size == 0
    # Eq. 2-5 as printed: tau(i) = omega_L * omega_H * ((n - 2i)/n)^2, worked out for these 6 values.
    values = np.array([0.1, 0.12, 0.15, 0.8, 0.9, 1.0])
    n, i = 6, np.arange(1, 6)
    tau = (np.cumsum(values)[:-1] / i * n) * (np.cumsum(values[::-1])[::-1][:-1] / (n - i) * n) * ((n - 2 * i) / n) ** 2
    assert adaptive_threshold(values, rule="paper") == values[int(np.argmax(tau))]


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, batch_size=32)


@pytest.mark.parametrize("photo", ["coffee.png", "chelsea.png"])
def test_ada_sise_keeps_fewer_maps_and_stays_close_to_sise(explainer: Explainer, photos: Path, photo: str) -> None:
    sise = explainer.explain(photos / photo, method="sise")
    ada = explainer.explain(photos / photo, method="ada-sise")
    assert ada.target == sise.target
    for block, kept in ada.masks_selected.items():
        assert kept <= sise.masks_selected[block] == ada.details["positive_gradient_maps"][block]
    assert ada.forward_passes < sise.forward_passes
    assert reference.pearson(ada.saliency, sise.saliency) > 0.6


def test_two_targets_share_passes_and_give_the_same_maps(explainer: Explainer, photos: Path) -> None:
    together = explainer.explain_targets(photos / "coffee.png", [967, 968], method="sise")
    alone = [explainer.explain(photos / "coffee.png", target=t, method="sise") for t in (967, 968)]
    assert together[0].passes == together[1].passes < alone[0].passes + alone[1].passes
    for joint, single in zip(together, alone):
        assert joint.target == single.target and joint.masks_used == single.masks_used
        np.testing.assert_allclose(joint.saliency, single.saliency, atol=1e-5)
        for name in single.block_maps:
            np.testing.assert_allclose(joint.block_maps[name], single.block_maps[name], rtol=1e-5, atol=1e-9)


def test_masks_that_several_maps_give_are_scored_once() -> None:
    """Maps equal after min-max normalisation give one attribution mask (SISE eq. 7): one
    representative, the others pointing at it; constant and non-finite maps give none."""
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(7, 5, 6)).astype(np.float32)
    maps[3] = 2.0 * maps[1]
    maps[5] = maps[1]
    maps[2] = 0.0
    maps[6, 0, 0] = np.inf
    representatives, group = distinct_maps(maps, np.arange(7))
    assert representatives.tolist() == [0, 1, 4]
    assert group.tolist() == [0, 1, -1, 1, 2, 1, -1]


def test_duplicate_masks_count_in_the_mean_but_not_in_the_passes(explainer: Explainer, photos: Path) -> None:
    result = explainer.explain(photos / "coffee.png", target=967)
    duplicates = sum(result.details["duplicate_masks"].values())
    assert duplicates > 0  # Lite0 has channels that are affine copies on this photo
    assert result.passes == result.forward_passes == sum(result.masks_used.values()) - duplicates
