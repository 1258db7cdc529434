"""What every method works on: one preprocessed image, its target classes, the
session, a reusable masked-batch buffer, and the masked-pass engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .. import core
from ..cancel import NEVER, Cancellation
from ..session import BlockFeatures, ExplainableModel

if TYPE_CHECKING:
    from ..bound_scoring import BoundScoring

Progress = Callable[[int], None]
Payload = TypeVar("Payload")


def no_progress(n: int) -> None:
    return None


@dataclass
class Context:
    """model, image x (C, H, W) or (H, W, C) without batch axis, targets (T,), batch
    (B, ...) float32 buffer, and the pass counter. One Context per explanation call: the
    buffer and the feature cache are never shared between threads. `cancellation` is
    checked before every gradient call and every batch of masked passes. With `bound`,
    SISE's masked passes run through onnxruntime IO binding on the session's device
    (bound_scoring.py)."""

    model: ExplainableModel
    image: np.ndarray
    targets: list[int]
    batch: np.ndarray
    progress: Progress = no_progress
    prefetch: bool = False
    passes: int = 0
    bound: BoundScoring | None = None
    cancellation: Cancellation = NEVER
    _features: dict[tuple[int, str], list[BlockFeatures]] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.model.info.input.height, self.model.info.input.width

    def features(self, target: int, objective: str) -> list[BlockFeatures]:
        """Block activations and gradients for `target`: of Psi (objective="score") or
        of the raw class output (objective="logit"); one gradient call, cached."""
        key = (target, objective)
        if key not in self._features:
            self.cancellation.check(self.passes)
            onehot = np.zeros(self.model.info.num_classes, np.float32)
            onehot[target] = 1.0
            zeros = np.zeros_like(onehot)
            self._features[key] = (self.model.block_features(self.image, onehot, zeros) if objective == "score"
                                   else self.model.block_features(self.image, zeros, onehot))
        return self._features[key]

    def score_masks(self, chunks: Iterable[tuple[np.ndarray, Payload]]) -> Iterator[tuple[np.ndarray, Payload, np.ndarray]]:
        """Masked forward passes: for each (masks (b <= B, H, W), payload) yields the masks,
        the payload and Psi of every target on image * mask, (b, T). With `prefetch`, the
        next chunk of masks is made in a worker thread while onnxruntime runs this one."""
        layout = self.model.info.input.layout
        for masks, payload in (prefetched(chunks) if self.prefetch else chunks):
            count = masks.shape[0]
            if count == 0:
                continue
            self.cancellation.check(self.passes)
            core.build_masked_batch(self.image, masks, self.batch, layout)
            scores = self.model.batch_scores(self.batch[:count], self.targets)
            self.passes += count
            yield masks, payload, scores


_END = object()


def prefetched(items: Iterable[Payload]) -> Iterator[Payload]:
    """The items of `items`, each produced in a worker thread while the previous one is used."""
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(next, iterator, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = worker.submit(next, iterator, _END)
            yield item


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
    _, first, inverse = np.unique(unit, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(varying[first])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group[varying] = rank[inverse.ravel()]
    return indices[varying[first][order]], group


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
        masks = core.upsample_bilinear(activations[chunk], *size)
        informative = core.minmax_normalize(masks)
        progress(chunk.size)
        if not informative.all():
            masks, chunk = np.ascontiguousarray(masks[informative]), chunk[informative]
        yield masks, chunk
