"""The papers' evaluation metrics. S is a saliency map (H, W), G a boolean ground-truth
mask (H, W) of the same size. Model-truth metrics take `scores`, a function from a batch
of model inputs (n, ...) to the confidence Psi_c of the explained class (n,).

Ground truth (SISE paper, "Ground truth-based Metrics"):
  energy_pointing_game  EBPG = ||S . G||_1 / ||S||_1 (Wang et al. 2020)
  top_fraction_iou      IoU of the top 20 % pixels of S with G; its mean over images is mIoU
  bbox_score            N = |G|; fraction of the top-N pixels of S that fall in G (Schulz et al. 2020)
  pointing_game_hit     the maximum of S lies within 15 px of G (Zhang et al. 2018)
Model truth:
  drop_and_increase     keep the top 15 % pixels T of S: drop = max(0, Psi(I) - Psi(I . T)) / Psi(I),
                        increase = [Psi(I . T) > Psi(I)] (Chattopadhay et al. 2018; SISE paper, in
                        percent over the data set)
  deletion_auc          pixels removed (set to the preprocessing's zero) in order of S, AUC of Psi
  insertion_auc         pixels inserted into a Gaussian-blurred copy (kernel 51, sigma 50) in order
                        of S, AUC of Psi (Petsiuk et al. 2018); AUC by the trapezoid rule over the
                        fraction of pixels changed, `steps` equal steps.
Ties: every rank-based metric (Bbox, mIoU, Drop, Increase, deletion, insertion) ranks tied
saliency values by expectation over uniformly random tie orders (top_weights), never by
their place in the photo: a map of many equal values (SISE's zeros after the hard gate) is
not scored on the photo's top rows. Bbox is then the exact expectation (a constant map gives
|G| / N), mIoU the ratio of the expected intersection to the expected union. Drop, Increase
and the causal curves change the tied pixels at the cut in part, by their expected
membership: the expected input I . E[T], scored once. That is not the expected score (the
model is not linear), but it depends on no order and costs no extra pass; averaging seeded
orders would cost a batch per order and still vary with the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..images.blur import blurred
from .registry import GROUND, MODEL, Metric, register

Scores = Callable[[np.ndarray], np.ndarray]


def top_weights(saliency: np.ndarray, count: int, ascending: np.ndarray | None = None) -> np.ndarray:
    """The expected membership of each pixel in the top `count` of S when tied values are
    ranked in a uniformly random order: 1 above the cut value v (the count-th largest), 0
    below, and (count - #{S > v}) / #{S = v} for the pixels tied at v. It sums to `count`.
    A metric linear in the selection (Bbox) is thus its exact expectation over tie orders;
    no pixel gains from where it lies in the photo. `ascending`: S's values sorted, when
    the caller asks for many counts of one map (a causal curve) and sorts them once."""
    flat = saliency.ravel()
    if count <= 0:
        return np.zeros(saliency.shape)
    if count >= flat.size:
        return np.ones(saliency.shape)
    if ascending is None:
        ascending = np.sort(flat)
    cut = ascending[flat.size - count]
    below, not_above = np.searchsorted(ascending, cut, "left"), np.searchsorted(ascending, cut, "right")
    weights = (flat > cut).astype(np.float64)
    weights[flat == cut] = (count - (flat.size - not_above)) / (not_above - below)
    return weights.reshape(saliency.shape)


def energy_pointing_game(saliency: np.ndarray, truth: np.ndarray) -> float:
    total = float(saliency.sum())
    return float(saliency[truth].sum()) / total if total > 0 else 0.0


def top_fraction_iou(saliency: np.ndarray, truth: np.ndarray, fraction: float = 0.2) -> float:
    """|T & G| / |T | G| for the top `fraction` T of S, with |T & G| its expectation over tie
    orders and |T | G| = |T| + |G| - |T & G|."""
    count = int(round(fraction * saliency.size))
    inside = float(top_weights(saliency, count)[truth].sum())
    union = count + int(truth.sum()) - inside
    return inside / union if union > 0 else 0.0


def bbox_score(saliency: np.ndarray, truth: np.ndarray) -> float:
    count = int(truth.sum())
    if count == 0:
        return 0.0
    return float(top_weights(saliency, count)[truth].sum() / count)


def pointing_game_hit(saliency: np.ndarray, truth: np.ndarray, tolerance: float = 15.0) -> bool:
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    points = np.argwhere(truth)
    if points.size == 0:
        return False
    return bool((((points - (y, x)) ** 2).sum(axis=1) <= tolerance ** 2).any())


def _expand(mask: np.ndarray, layout: str) -> np.ndarray:
    """A pixel mask (H, W) broadcastable over a model input of `layout`."""
    return mask[None] if layout == "NCHW" else mask[..., None]


def drop_and_increase(scores: Scores, image: np.ndarray, saliency: np.ndarray, layout: str = "NCHW",
                      keep: float = 0.15) -> tuple[float, bool]:
    """(drop in [0, 1], increase) for one image; image is the model input without batch
    axis and saliency is at its spatial size."""
    kept = top_weights(saliency, int(round(keep * saliency.size))).astype(image.dtype)
    original, masked = scores(np.stack([image, image * _expand(kept, layout)]))
    drop = max(0.0, float(original - masked)) / float(original) if original > 0 else 0.0
    return drop, bool(masked > original)


def _auc(curve: np.ndarray) -> float:
    return float((curve.sum() - (curve[0] + curve[-1]) / 2) / (curve.size - 1))


def causal_curve(scores: Scores, start: np.ndarray, finish: np.ndarray, saliency: np.ndarray, steps: int,
                 layout: str = "NCHW", batch: int = 32) -> np.ndarray:
    """Psi along the path from `start` to `finish`: at step k the top k/steps of pixels
    (by saliency) come from `finish`, the rest from `start`; pixels tied at the cut are
    changed in part, by their expected membership (top_weights). (steps + 1,) values."""
    counts = np.round(np.linspace(0, saliency.size, steps + 1)).astype(np.int64)
    ascending = np.sort(saliency.ravel())
    curve = []
    for begin in range(0, counts.size, batch):
        chunk = counts[begin:begin + batch]
        changed = np.stack([_expand(top_weights(saliency, c, ascending).astype(start.dtype), layout) for c in chunk])
        curve.append(scores(start[None] * (1 - changed) + finish[None] * changed))
    return np.concatenate(curve)


def deletion_auc(scores: Scores, image: np.ndarray, saliency: np.ndarray, steps: int = 100,
                 layout: str = "NCHW", batch: int = 32) -> float:
    return _auc(causal_curve(scores, image, np.zeros_like(image), saliency, steps, layout, batch))


def insertion_auc(scores: Scores, image: np.ndarray, saliency: np.ndarray, steps: int = 100,
                  layout: str = "NCHW", batch: int = 32) -> float:
    return _auc(causal_curve(scores, blurred(image, layout), image, saliency, steps, layout, batch))


def drop(scores: Scores, image: np.ndarray, saliency: np.ndarray, steps: int, layout: str, batch: int) -> float:
    return drop_and_increase(scores, image, saliency, layout)[0]


def increase(scores: Scores, image: np.ndarray, saliency: np.ndarray, steps: int, layout: str, batch: int) -> bool:
    return drop_and_increase(scores, image, saliency, layout)[1]


register(Metric("ebpg", "EBPG (%)", GROUND, energy_pointing_game))
register(Metric("miou", "mIoU top 20% (%)", GROUND, top_fraction_iou))
register(Metric("bbox", "Bbox (%)", GROUND, bbox_score))
register(Metric("pointing", "Pointing game (%)", GROUND, pointing_game_hit))
register(Metric("drop", "Drop (%)", MODEL, drop, higher_is_better=False))
register(Metric("increase", "Increase (%)", MODEL, increase))
register(Metric("deletion", "Deletion AUC", MODEL, deletion_auc, percent=False, higher_is_better=False))
register(Metric("insertion", "Insertion AUC", MODEL, insertion_auc, percent=False))
