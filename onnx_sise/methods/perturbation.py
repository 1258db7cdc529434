"""Perturbation baselines on the same masked-pass engine: RISE and Score-CAM.

RISE (Petsiuk et al., BMVC 2018): N binary grids of s x s cells, each on with
probability p, bilinearly upsampled to ((s+1) * H/s, (s+1) * W/s) and cropped at a random
shift; S = sum_i Psi_c(I . M_i) M_i / (N p).
Score-CAM (Wang et al., CVPR-W 2020): every feature map of one tap, upsampled and min-max
normalised, masks the input; its weight is Psi_c(I . M_k) (the softmax probability, so the
weights are already normalised across classes); S = ReLU(sum_k w_k A_k) at the tap's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import kernels
from .cam import CamOptions, tap_index
from .context import Context
from .options import RISE, Domain, option, seed_option
from .registry import Method, register
from .result import MethodResult
from .sise.masks import attribution_masks


@dataclass(frozen=True)
class RiseOptions:
    """rise_masks: N, the mask count; rise_cells: s, grid cells per side; rise_p: the
    probability of keeping a cell; seed: of the masks (reproducible)."""

    rise_masks: int = option(2000, Domain("int", 1, 100_000, group=RISE, help="RISE mask count"))
    rise_cells: int = option(7, Domain("int", 1, 64, group=RISE, help="RISE grid cells per side"))
    rise_p: float = option(0.5, Domain("real", 0, 1, low_open=True, group=RISE,
                                       help="RISE probability of keeping a cell"))
    seed: int = seed_option()


def rise_masks(count: int, size: tuple[int, int], step: int, cells: int = 7, p: float = 0.5,
               seed: int = 0) -> Iterator[tuple[np.ndarray, None]]:
    """RISE's mask generator in chunks of `step`, reproducible for a seed: each s x s grid
    upsampled bilinearly to (s + 1) cells and cropped at a random shift. Bilinear resizing
    is separable, so each mask is Ry[y:y + H] @ grid @ Rx[x:x + W].T, computed for the
    cropped window only (kernels.bilinear_matrix gives R)."""
    height, width = size
    rng = np.random.default_rng(seed)
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    up_rows = kernels.bilinear_matrix((cells + 1) * cell_h, cells)
    up_cols = np.ascontiguousarray(kernels.bilinear_matrix((cells + 1) * cell_w, cells).T)
    for start in range(0, count, step):
        n = min(step, count - start)
        grids = (rng.random((n, cells, cells)) < p).astype(np.float32)
        shifts = rng.integers(0, [cell_h, cell_w], size=(n, 2))
        rows = np.stack([up_rows[y:y + height] for y in shifts[:, 0]])
        cols = np.stack([up_cols[:, x:x + width] for x in shifts[:, 1]])
        yield np.matmul(np.matmul(rows, grids), cols), None


def explain_rise(ctx: Context, masks: int = 2000, cells: int = 7, p: float = 0.5, seed: int = 0) -> list[MethodResult]:
    height, width = ctx.size
    acc = np.zeros((len(ctx.targets), height * width), dtype=np.float64)
    for chunk, _, scores in ctx.score_masks(rise_masks(masks, ctx.size, ctx.batch.shape[0], cells, p, seed)):
        acc += np.einsum("bt,bp->tp", scores.astype(np.float32, copy=False), chunk.reshape(chunk.shape[0], -1))
        ctx.progress(chunk.shape[0])
    maps = (acc / (masks * p)).reshape(-1, height, width).astype(np.float32)
    return [MethodResult(saliency=m, block_maps={}, masks_used={"rise": masks},
                         details={"cells": cells, "p": p, "seed": seed}) for m in maps]


def explain_score_cam(ctx: Context, layer: str | None = None) -> list[MethodResult]:
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    activations = ctx.score_features(ctx.targets[0])[index].activations
    weights = np.zeros((len(ctx.targets), activations.shape[0]), dtype=np.float64)
    chunks = attribution_masks(activations, np.arange(activations.shape[0]), ctx.size, ctx.batch.shape[0],
                               ctx.progress)
    used = 0
    for _, kept, scores in ctx.score_masks(chunks):
        weights[:, kept] = scores.T
        used += kept.size
    results = []
    for w in weights:
        cam = np.maximum(np.tensordot(w, activations.astype(np.float64), axes=1), 0).astype(np.float32)
        results.append(MethodResult(saliency=cam, block_maps={taps[index].name: cam},
                                    masks_used={taps[index].name: used}, details={"layer": taps[index].name}))
    return results


register(Method("rise", lambda ctx, o: explain_rise(ctx, o.rise_masks, o.rise_cells, o.rise_p, o.seed), (RiseOptions,),
                "RISE: random coarse masks weighted by the score they keep", "RISE, BMVC 2018"))
register(Method("score-cam", lambda ctx, o: explain_score_cam(ctx, o.layer), (CamOptions,),
                "Score-CAM: feature maps weighted by the score of the input they mask", "Score-CAM, CVPR-W 2020"))
