"""SISE phases 2 and 3 for one block: gradient-based feature-map selection (SISE eq. 6-8)
and attribution-based input sampling (eq. 10-12), streamed in fixed-size batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import core
from .session import BlockFeatures, ExplainableModel


@dataclass(frozen=True)
class BlockMap:
    """Visualisation map V (H, W) of one block at the model's input size, with counts:
    `selected` maps passed the gradient filter, `used` of them were informative masks."""

    name: str
    saliency: np.ndarray
    selected: int
    used: int


def average_gradients(gradients: np.ndarray) -> np.ndarray:
    """alpha_k = sum over locations of dPsi/dA_k (SISE eq. 6), for gradients (N, h, w)."""
    return gradients.reshape(gradients.shape[0], -1).sum(axis=1, dtype=np.float64)


def select_positive(alpha: np.ndarray, mu: float = 0.0) -> np.ndarray:
    """Indices k with alpha_k > mu * max_k alpha_k (SISE eq. 7-8); mu = 0 keeps the
    positive-gradient maps."""
    if mu < 0:
        raise ValueError(f"mu must be >= 0 (SISE eq. 7), got {mu}")
    return np.flatnonzero(alpha > mu * alpha.max())


def block_visualization(
    model: ExplainableModel,
    image: np.ndarray,
    features: BlockFeatures,
    selected: np.ndarray,
    target: int,
    batch: np.ndarray,
    name: str,
    progress: Callable[[int], None] = lambda n: None,
) -> BlockMap:
    """V(lambda) = mean over masks m of Psi_c(I . m) * m(lambda) / sum(m) (SISE eq. 12).

    Masks m_k = min-max normalisation of the bilinear upsampling of A_k to the input size
    (Omega of eq. 7); constant maps are skipped. `batch` is the reusable float32 buffer
    (B, C, H, W) or (B, H, W, C) the masked inputs are written into; peak memory is
    bounded by B, whatever the number of masks.
    """
    spec = model.info.input
    height, width = spec.height, spec.width
    acc = np.zeros((height, width), dtype=np.float64)
    activations = features.activations[selected]
    flat = activations.reshape(activations.shape[0], -1)
    varying = np.flatnonzero(flat.max(axis=1) > flat.min(axis=1))
    used = 0
    step = batch.shape[0]
    for start in range(0, varying.size, step):
        chunk = activations[varying[start:start + step]]
        masks = core.upsample_bilinear(chunk, height, width)
        informative = core.minmax_normalize(masks)
        if not informative.all():
            masks = np.ascontiguousarray(masks[informative])
        count = masks.shape[0]
        if count:
            core.build_masked_batch(image, masks, batch, spec.layout)
            scores = model.batch_scores(batch[:count], [target])[:, 0]
            core.accumulate_contributions(masks, scores, acc)
            used += count
        progress(chunk.shape[0])
    saliency = (acc / used).astype(np.float32) if used else np.zeros((height, width), np.float32)
    progress(selected.size - varying.size)
    return BlockMap(name=name, saliency=saliency, selected=int(selected.size), used=used)
