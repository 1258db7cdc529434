"""SISE's attribution masks (SISE eq. 7): feature maps of a block, upsampled to the
input and min-max normalised; maps that give the same mask are scored once. Score-CAM
masks the input with the same maps."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ... import kernels
from ...progress import Progress, no_progress


def distinct_maps(activations: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps A_k, k in `indices` (ascending), that give distinct attribution masks
    (SISE eq. 7): a constant or non-finite map gives none, and maps equal after min-max
    normalisation (e.g. sparse deep maps with the same single active location) give the
    same mask, which is scored once. Returns (representatives (R,) ascending, the representative's position
    for each of `indices`, -1 where none)."""
    group = np.full(indices.size, -1, dtype=np.int64)
    if indices.size == 0:
        return indices, group
    flat = activations.reshape(activations.shape[0], -1)[indices].astype(np.float64)
    lo, hi = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    varying = np.flatnonzero((hi > lo)[:, 0] & np.isfinite(flat).all(axis=1))
    if varying.size == 0:
        return indices[:0], group
    unit = (flat[varying] - lo[varying]) / (hi[varying] - lo[varying])
    # Equal masks are equal bytes here: the values are finite, and a zero is +0.0 (x - x).
    seen: dict[bytes, int] = {}
    first: list[int] = []
    for position, row in enumerate(unit):
        representative = seen.setdefault(row.tobytes(), len(first))
        if representative == len(first):
            first.append(position)
        group[varying[position]] = representative
    return indices[varying[first]], group


def attribution_masks(activations: np.ndarray, indices: np.ndarray, size: tuple[int, int], step: int,
                      progress: Progress = no_progress) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Omega of SISE eq. 7 in chunks of `step`: bilinear upsampling of A_k to `size`,
    min-max normalised. Constant maps carry nothing and are dropped first, at feature-map
    resolution, so that every chunk but the last fills a whole batch. Yields (masks,
    their indices k)."""
    flat = activations.reshape(activations.shape[0], -1)[indices]
    varying = indices[flat.max(axis=1) > flat.min(axis=1)] if indices.size else indices
    progress(indices.size - varying.size)
    for start in range(0, varying.size, step):
        chunk = varying[start:start + step]
        masks = kernels.upsample_bilinear(activations[chunk], *size)
        informative = kernels.minmax_normalize(masks)
        progress(chunk.size)
        if not informative.all():
            masks, chunk = np.ascontiguousarray(masks[informative]), chunk[informative]
        yield masks, chunk
