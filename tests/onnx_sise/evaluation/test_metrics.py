"""Each metric on a tiny hand-made case whose value was worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_sise.evaluation import metrics

S = np.array([[0.9, 0.1, 0.0],
              [0.8, 0.4, 0.0],
              [0.0, 0.2, 0.6]], dtype=np.float32)
G = np.array([[1, 1, 0],
              [1, 0, 0],
              [0, 0, 0]], dtype=bool)


def test_energy_pointing_game() -> None:
    # (0.9 + 0.1 + 0.8) / 3.0
    assert metrics.energy_pointing_game(S, G) == pytest.approx(0.6)


def test_top_20_percent_iou() -> None:
    # 20 % of 9 pixels = 2 (rounded): {0.9, 0.8}, both in G; union = G (3 pixels) -> 2/3
    assert metrics.top_fraction_iou(S, G) == pytest.approx(2 / 3)


def test_bbox_score() -> None:
    # |G| = 3; top 3 = {0.9, 0.8, 0.6}; 2 of them in G -> 2/3
    assert metrics.bbox_score(S, G) == pytest.approx(2 / 3)


def test_pointing_game_with_tolerance() -> None:
    saliency = np.zeros((40, 40), np.float32)
    saliency[30, 30] = 1.0
    truth = np.zeros((40, 40), bool)
    truth[0:10, 0:10] = True
    # nearest box pixel (9, 9): distance sqrt(21^2 + 21^2) = 29.7 > 15 -> miss
    assert not metrics.pointing_game_hit(saliency, truth)
    truth[20:25, 20:25] = True  # (24, 24): distance sqrt(36 + 36) = 8.5 -> hit
    assert metrics.pointing_game_hit(saliency, truth)
    assert not metrics.pointing_game_hit(saliency, truth, tolerance=5)


def _mean_score(batch: np.ndarray) -> np.ndarray:
    """A stand-in model: Psi = the mean input value (independent of the code under test)."""
    return batch.reshape(batch.shape[0], -1).mean(axis=1)


def test_drop_and_increase() -> None:
    image = np.ones((1, 3, 3), np.float32)
    image[0, 2, 2] = 4.0  # Psi(I) = (8 + 4) / 9 = 4/3
    # top 15 % of 9 pixels = 1 pixel: (0, 0) with 0.9 -> Psi(I . T) = 1/9
    drop, increase = metrics.drop_and_increase(_mean_score, image, S)
    assert drop == pytest.approx((4 / 3 - 1 / 9) / (4 / 3)) and not increase
    bright = np.full((1, 3, 3), -1.0, np.float32)
    bright[0, 0, 0] = 5.0  # Psi(I) = (5 - 8) / 9 < Psi(I . T) = 5/9
    drop, increase = metrics.drop_and_increase(_mean_score, bright, S)
    assert drop == 0.0 and increase


def test_deletion_and_insertion_auc() -> None:
    image = np.zeros((1, 2, 2), np.float32)
    image[0] = [[4.0, 0.0], [0.0, 0.0]]
    saliency = np.array([[1.0, 0.5], [0.2, 0.1]], np.float32)
    # deletion, 4 steps of one pixel: Psi = 1, 0, 0, 0, 0 -> AUC = (1 - 1/2 - 0) / 4 = 0.125
    assert metrics.deletion_auc(_mean_score, image, saliency, steps=4) == pytest.approx(0.125)
    # the worst order deletes the bright pixel last: 1, 1, 1, 1, 0 -> (4 - 1/2) / 4 = 0.875
    assert metrics.deletion_auc(_mean_score, image, -saliency, steps=4) == pytest.approx(0.875)
    # insertion from a constant image (its blur is itself): 1/4 everywhere -> inserting changes nothing
    flat = np.full((1, 60, 60), 0.25, np.float32)
    assert metrics.insertion_auc(_mean_score, flat, np.random.default_rng(0).random((60, 60)), steps=10) == pytest.approx(0.25)


def test_insertion_starts_from_the_blur() -> None:
    image = np.zeros((3, 60, 60), np.float32)
    image[:, 30, 30] = 3600.0
    curve = metrics.causal_curve(_mean_score, metrics.blurred(image), image, image[0], steps=2)
    assert curve[0] == pytest.approx(_mean_score(metrics.blurred(image)[None])[0])
    assert curve[-1] == pytest.approx(1.0)


# Ties: ranked by expectation over random tie orders, never by raster order.
TIED = np.array([[0.0, 0.0, 0.0],
                 [0.0, 0.5, 0.0],
                 [0.0, 0.0, 0.0]], dtype=np.float32)


def test_top_weights_share_the_cut_among_tied_pixels() -> None:
    # top 3 of TIED: the 0.5, then 2 of the 8 zeros: each zero in with probability 2/8
    weights = metrics.top_weights(TIED, 3)
    assert weights[1, 1] == 1.0 and weights.sum() == pytest.approx(3.0)
    assert np.allclose(weights[TIED == 0], 0.25)
    assert metrics.top_weights(TIED, 0).sum() == 0 and metrics.top_weights(TIED, 9).min() == 1.0


@pytest.mark.parametrize("shape", [(3, 3), (7, 11)])
def test_a_constant_map_gives_bbox_g_over_n(shape: tuple[int, int]) -> None:
    truth = np.zeros(shape, bool)
    truth[0, :2] = True
    truth[-1, -1] = True  # |G| = 3
    constant = np.full(shape, 0.3, np.float32)
    # every pixel is in the top |G| with probability |G| / N, so E[|T & G|] / |G| = |G| / N
    assert metrics.bbox_score(constant, truth) == pytest.approx(3 / truth.size)
    # raster order would have put the top |G| on the first row: Bbox 2/3 whatever the map says
    assert metrics.bbox_score(constant, np.flipud(truth)) == pytest.approx(3 / truth.size)


def test_bbox_and_iou_with_a_tie_at_the_cut() -> None:
    truth = np.zeros((3, 3), bool)
    truth[0, 0] = truth[1, 1] = True  # |G| = 2
    # top 2 = the 0.5 (in G) and one of 8 zeros, (0, 0) with probability 1/8: E[|T & G|] = 1 + 1/8
    assert metrics.bbox_score(TIED, truth) == pytest.approx((1 + 1 / 8) / 2)
    # top 20 % of 9 = 2 pixels, the same expected intersection 9/8; union = 2 + 2 - 9/8
    assert metrics.top_fraction_iou(TIED, truth) == pytest.approx((9 / 8) / (4 - 9 / 8))


def test_drop_keeps_the_tied_pixels_in_part() -> None:
    image = np.full((1, 3, 3), 2.0, np.float32)  # Psi(I) = 2
    # top 15 % of 9 = 1 pixel, all 9 tied: each kept with weight 1/9 -> Psi(I . E[T]) = 2/9
    drop, increase = metrics.drop_and_increase(_mean_score, image, np.zeros((3, 3), np.float32))
    assert drop == pytest.approx((2 - 2 / 9) / 2) and not increase


def test_deletion_of_a_constant_map_does_not_depend_on_where_the_object_is() -> None:
    """Raster order would delete the top rows first: the bright pixel's place would decide."""
    flat = np.zeros((2, 2), np.float32)
    aucs = []
    for place in [(0, 0), (1, 1)]:
        image = np.zeros((1, 2, 2), np.float32)
        image[(0, *place)] = 4.0  # Psi(I) = 1
        aucs.append(metrics.deletion_auc(_mean_score, image, flat, steps=4))
    # each step deletes 1/4 of every pixel in expectation: Psi = 1, 3/4, 1/2, 1/4, 0 -> AUC 1/2
    assert aucs == pytest.approx([0.5, 0.5])
