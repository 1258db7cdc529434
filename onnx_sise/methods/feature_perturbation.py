"""Methods that perturb the feature maps of one tap and run the rest of the network,
the tap's head (model/head.py, `Context.head_outputs`), on them: no masked input passes.

Ablation-CAM (Desai and Ramaswamy, WACV 2020): with A (N, h, w) the activations and y_c
the raw class output, channel k ablated (set to the ablation value) gives y_c^k, and
  w_k = (y_c - y_c^k) / y_c,   M = ReLU(sum_k w_k A_k)
at the tap's size. As pytorch-grad-cam's AblationCAM (1.5.7, its defaults: every channel
ablated, ratio_channels_to_ablate = 1): the ablation value is 0 where the smallest
activation of the tap is 0 (after a ReLU), else that minimum - 1e7.

Recipro-CAM (Byun and Lee, 2022): copy (i, j) of A keeps location (i, j) alone, every
channel, zeros elsewhere (its spatial masks M^(i,j)); the class output of each copy
through the head is the map at (i, j):
  S_c(i, j) = y_c(A . M^(i,j)),   then min-max normalised
at the tap's size. As OpenVINO XAI's white-box ReciproCAM for CNNs (1.1.0): one-location
binary masks (its Gaussian 3 x 3 neighbourhood is for transformers only), y the logits
that feed the model's softmax, the map min-max scaled per class.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .cam import CamOptions, one_tap, tap_index
from .context import Context
from .registry import Method, register
from .result import MethodResult

ABLATION_OFFSET = 1e7  # pytorch-grad-cam's ABLATION_VALUE below the minimum, where that is not 0


def ablation_value(activations: np.ndarray) -> float:
    """What an ablated channel is set to: 0 where min A = 0, else min A - 1e7 (pytorch-grad-cam)."""
    low = float(activations.min())
    return 0.0 if low == 0 else float(np.float32(low) - np.float32(ABLATION_OFFSET))


def ablated(activations: np.ndarray, step: int, value: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Copies of A (N, h, w) with channel k set to `value`, `step` at a time, with their k."""
    channels = activations.shape[0]
    for first in range(0, channels, step):
        kept = np.arange(first, min(first + step, channels))
        batch = np.repeat(activations[None], kept.size, axis=0)
        batch[np.arange(kept.size), kept] = value
        yield batch, kept


def explain_ablation_cam(ctx: Context, layer: str | None = None) -> list[MethodResult]:
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    activations = ctx.logit_features(ctx.targets[0], index)[index].activations
    value = ablation_value(activations)
    _, _, whole, _ = next(ctx.head_outputs(index, [(activations[None], None)]))
    dropped = np.zeros((len(ctx.targets), activations.shape[0]), dtype=np.float64)
    for _, kept, logits, _ in ctx.head_outputs(index, ablated(activations, ctx.batch.shape[0], value)):
        dropped[:, kept] = logits.T
        ctx.progress(kept.size)
    original = whole[0].astype(np.float64)[:, None]
    weights = (original - dropped) / original
    results = []
    for w in weights:
        cam = np.maximum(np.tensordot(w, activations.astype(np.float64), axes=1), 0).astype(np.float32)
        results.append(MethodResult(saliency=cam, block_maps={taps[index].name: cam},
                                    details={"layer": taps[index].name, "head_passes": ctx.head_passes,
                                             "ablation_value": value}))
    return results


def recipro_copies(activations: np.ndarray, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Copies of A (N, h, w) each keeping one location (raster order), `step` at a time, with their flat index."""
    _, height, width = activations.shape
    for first in range(0, height * width, step):
        kept = np.arange(first, min(first + step, height * width))
        batch = np.zeros((kept.size, *activations.shape), dtype=np.float32)
        rows, cols = np.divmod(kept, width)
        batch[np.arange(kept.size), :, rows, cols] = activations[:, rows, cols].T
        yield batch, kept


def explain_reciprocam(ctx: Context, layer: str | None = None) -> list[MethodResult]:
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    activations = ctx.logit_features(ctx.targets[0], index)[index].activations
    _, height, width = activations.shape
    outputs = np.zeros((len(ctx.targets), height * width), dtype=np.float64)
    for _, kept, logits, _ in ctx.head_outputs(index, recipro_copies(activations, ctx.batch.shape[0])):
        outputs[:, kept] = logits.T
        ctx.progress(kept.size)
    results = []
    for row in outputs:
        low, high = row.min(), row.max()
        cam = ((row - low) / (high - low + 1e-12)).reshape(height, width).astype(np.float32)
        results.append(MethodResult(saliency=cam, block_maps={taps[index].name: cam},
                                    details={"layer": taps[index].name, "head_passes": ctx.head_passes}))
    return results


register(Method("ablation-cam", lambda ctx, o: explain_ablation_cam(ctx, o.layer), (CamOptions,),
                "Ablation-CAM: feature maps weighted by the logit drop when each is ablated",
                "Ablation-CAM, Desai and Ramaswamy, WACV 2020", gradients=one_tap))
register(Method("reciprocam", lambda ctx, o: explain_reciprocam(ctx, o.layer), (CamOptions,),
                "Recipro-CAM: the class output of copies of the feature maps that keep one place each",
                "Recipro-CAM, Byun and Lee 2022 (arXiv:2209.14074)", gradients=one_tap))
