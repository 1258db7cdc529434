"""What every method works on: one preprocessed image, its target classes, the
session, a reusable masked-batch buffer, and the masked-pass engine."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .. import kernels
from ..cancel import NEVER, Cancellation
from ..model.head import head_of
from ..model.info import ModelInfo
from ..model.session import BlockFeatures, ExplainableModel, GradientCall
from ..progress import Progress, no_progress

if TYPE_CHECKING:
    from .sise.io_binding import IoBindingPipeline

Payload = TypeVar("Payload")
SCORE, LOGIT = "score", "logit"  # what a gradient call differentiates: Psi or y


@dataclass(frozen=True)
class GradientNeed:
    """What a method's gradient call differentiates (SCORE or LOGIT) and down to which tap."""

    objective: str
    from_tap: int


def every_tap(records: tuple[object, ...], info: ModelInfo) -> GradientNeed:
    """The gradients of Psi at every tap (SISE eq. 6)."""
    return GradientNeed(SCORE, 0)


@dataclass
class Context:
    """model, image x (C, H, W) or (H, W, C) without batch axis, targets (T,), batch
    (B, ...) float32 buffer, and the pass counter. One Context per explanation call: the
    buffer and the feature cache are never shared between threads. `cancellation` is
    checked before every gradient call and every batch of masked passes. With
    `io_binding`, SISE's masked passes run through onnxruntime IO binding on the
    session's device (methods/sise/io_binding.py). `head_passes` counts the feature
    maps run through a tap's head (`head_outputs`), apart from the masked passes."""

    model: ExplainableModel
    image: np.ndarray
    targets: list[int]
    batch: np.ndarray
    progress: Progress = no_progress
    prefetch: bool = False
    passes: int = 0
    head_passes: int = 0
    io_binding: IoBindingPipeline | None = None
    cancellation: Cancellation = NEVER
    _cache: dict[tuple[int, str], tuple[int, list[BlockFeatures | None]]] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.model.info.input.height, self.model.info.input.width

    def score_features(self, target: int, from_tap: int = 0) -> list[BlockFeatures | None]:
        """Block activations and gradients of Psi_target (the confidence: SISE, Score-CAM),
        the taps from `from_tap` on (None before it)."""
        return self.features([target], SCORE, from_tap)[0]

    def logit_features(self, target: int, from_tap: int = 0) -> list[BlockFeatures | None]:
        """Block activations and gradients of the raw class output y_target (the CAM methods),
        the taps from `from_tap` on (None before it)."""
        return self.features([target], LOGIT, from_tap)[0]

    def features(self, targets: list[int], objective: str, from_tap: int = 0) -> list[list[BlockFeatures | None]]:
        """Per target, the block features of `objective` (SCORE: Psi, LOGIT: y) at the taps
        from `from_tap` on: one gradient call for every target not cached yet (one row of
        class weights each, over one forward pass), the backward down to `from_tap` only."""
        missing = [t for t in dict.fromkeys(targets) if (t, objective) not in self._cache
                   or self._cache[(t, objective)][0] > from_tap]
        if missing:
            self.cancellation.check(self.passes)
            onehot = np.zeros((len(missing), self.model.info.num_classes), np.float32)
            onehot[np.arange(len(missing)), missing] = 1.0
            zeros = np.zeros((1, self.model.info.num_classes), np.float32)
            call = (self.model.gradients(self.image, onehot, zeros, from_tap=from_tap) if objective == SCORE
                    else self.model.gradients(self.image, zeros, onehot, from_tap=from_tap))
            self.remember(missing, objective, from_tap, call)
        return [self._cache[(t, objective)][1] for t in targets]

    def remember(self, targets: list[int], objective: str, from_tap: int, call: GradientCall) -> None:
        """Keep the features of a gradient call made for `targets` (one row each, in order)."""
        for target, features in zip(targets, call.features):
            self._cache[(target, objective)] = (from_tap, features)

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
            kernels.build_masked_batch(self.image, masks, self.batch, layout)
            scores = self.model.batch_scores(self.batch[:count], self.targets)
            self.passes += count
            yield masks, payload, scores

    def head_outputs(self, index: int, chunks: Iterable[tuple[np.ndarray, Payload]]
                     ) -> Iterator[tuple[np.ndarray, Payload, np.ndarray, np.ndarray]]:
        """Feature-map passes through the head of tap `index` (model/head.py): for each
        (feature maps (b, N, h, w), payload) yields the maps, the payload, and the raw
        outputs y and Psi of every target, (b, T) each. Cancellation is checked per chunk."""
        head = head_of(self.model, index)
        for features, payload in chunks:
            count = features.shape[0]
            if count == 0:
                continue
            self.cancellation.check(self.passes + self.head_passes)
            logits, scores = head(features)
            self.head_passes += count
            yield features, payload, logits[:, self.targets], scores[:, self.targets]


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
