"""SISE and Ada-SISE selection, and several targets sharing masked passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference

from onnx_sise import Explainer, OptionError
from onnx_sise.methods.sise.masks import distinct_maps
from onnx_sise.methods.sise.method import (
    adaptive_threshold,
    block_maps,
    select_adaptive,
    select_positive,
    selection_cut,
    selection_weights,
)


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


def test_soft_selection_weights_by_hand() -> None:
    alpha = np.array([-1.0, 0.02, 0.05, 0.5, 2.0])  # v = -0.5, 0.01, 0.025, 0.25, 1
    kept = select_positive(alpha)
    np.testing.assert_allclose(selection_weights(alpha, kept, 0.0, 0.1), [0.1, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(selection_weights(alpha, kept[2:], 0.2, 0.1), [0.5, 1.0])
    assert selection_weights(-alpha, np.array([0]), 0.0, 0.1).tolist() == [1.0]  # max alpha <= 0: all weigh 1
    assert selection_cut(alpha, False, 0.3, "otsu") == 0.3
    v = alpha / 2.0
    assert selection_cut(alpha, True, 0.0, "otsu") == adaptive_threshold(v[v > 0])


def test_soft_selection_block_map_against_a_numpy_reference(explainer: Explainer, photos: Path) -> None:
    """V of eq. 12 as the weighted mean sum_k w_k C_k / sum_k w_k, the contributions C_k
    scored one map at a time through the session; weights of 1 give the paper's map."""
    from onnx_sise.methods import Context

    x, _ = explainer.preprocess(photos / "coffee.png")
    ctx = Context(model=explainer.model, image=x, targets=[967], batch=np.empty((32, *x.shape), np.float32))
    block = ctx.score_features(967)[2]
    alpha = block.gradients.reshape(block.gradients.shape[0], -1).sum(axis=1, dtype=np.float64)
    kept = select_positive(alpha)
    weights = selection_weights(alpha, kept, 0.0, 0.3)
    assert 0 < weights.min() < 1
    found = block_maps(ctx, 2, [kept], [weights])[0][0]

    masks, informative = reference.minmax_normalize(reference.upsample_bilinear(block.activations[kept], 224, 224))
    masks, w = masks[informative], weights[informative]
    scores = explainer.model.batch_scores(reference.masked_batch(x, masks).astype(np.float32), [967])[:, 0]
    expected = reference.contributions(masks, scores * w) / w.sum()
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-7 * expected.max())
    np.testing.assert_allclose(block_maps(ctx, 2, [kept], [np.ones(kept.size)])[0][0], block_maps(ctx, 2, [kept])[0][0],
                               rtol=1e-6)


@pytest.mark.slow
def test_soft_selection_through_io_binding_and_options(lite0_path: Path, explainer: Explainer, photos: Path) -> None:
    host = explainer.explain(photos / "coffee.png", 967, method="ada-sise", sise_selection="soft", sise_margin=0.2)
    bound = Explainer(lite0_path, io_binding=True).explain(photos / "coffee.png", 967, method="ada-sise",
                                                           sise_selection="soft", sise_margin=0.2)
    np.testing.assert_allclose(bound.saliency, host.saliency, atol=1e-4)
    assert host.masks_used == bound.masks_used and host.masks_selected == explainer.explain(
        photos / "coffee.png", 967, method="ada-sise").masks_selected  # the same maps are kept
    with pytest.raises(OptionError, match="sise_margin must lie in"):
        explainer.explain(photos / "coffee.png", method="sise", sise_selection="soft", sise_margin=0.0)
