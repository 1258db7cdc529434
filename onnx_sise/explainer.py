"""`Explainer`: owns the onnxruntime session, the preprocessing and target choice, and
runs an explanation method (onnx_sise.methods) over them."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

from . import core
from .bound_scoring import BoundScoring
from .errors import ImageError, OptionError, PlainModelError, TargetError
from .fusion import GATES
from .image_io import read_rgb, to_model_input
from .methods import METHODS, Context, MethodOptions
from .methods.context import no_progress
from .model_info import ModelInfo
from .prepare import Prepared, prepared_model
from .progress import ProgressBar
from .session import ExplainableModel

ImageLike = Union[str, os.PathLike, np.ndarray]
DEFAULT_BATCH_SIZE = 32
BOUND_METHODS = ("sise", "ada-sise")


@dataclass(frozen=True)
class Explanation:
    """One explanation of one target.

    saliency: (H, W) float32 in [0, 1], the photo's own size.
    block_maps: per tap name, the map the method built there (see MethodResult).
    masks_used: per tap name, the masks this target was scored on.
    passes: masked forward passes the whole call ran (shared by all its targets).
    """

    saliency: np.ndarray
    target: int
    label: str
    score: float
    method: str
    block_maps: dict[str, np.ndarray]
    masks_selected: dict[str, int]
    masks_used: dict[str, int]
    seconds: float
    passes: int = 0
    details: dict[str, object] = field(default_factory=dict)

    @property
    def forward_passes(self) -> int:
        """Masked passes this target needs on its own (a mask that several feature maps
        give is scored once: details["duplicate_masks"])."""
        duplicates = self.details.get("duplicate_masks", {})
        return sum(self.masks_used.values()) - sum(duplicates.values())  # type: ignore[union-attr]

    def summary(self) -> dict[str, object]:
        """JSON-ready description (no arrays)."""
        return {
            "target": self.target, "label": self.label, "score": round(self.score, 6), "method": self.method,
            "masks_selected": self.masks_selected, "masks_used": self.masks_used,
            "forward_passes": self.forward_passes, "passes_run": self.passes, "seconds": round(self.seconds, 3),
            **self.details,
        }


class Explainer:
    """Explains an explainable ONNX's predictions.

    Args:
        path: the `*.sise.onnx` written by `python -m onnx_sise export`.
        provider: "cpu", or "cuda" with onnxruntime-gpu.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        batch_size: masked inputs per forward pass.
        prepare: a plain ONNX classifier is prepared into an explainable one (needs the
            export extras the first time) and cached in `cache_dir` (default
            $ONNX_SISE_CACHE or ~/.cache/onnx_sise); `self.prepared` says which file and
            whether it came from the cache.
        prefetch: make the next batch of masks in a worker thread while onnxruntime
            runs the current one (benchmarks/RESULTS.md has its measured effect).
        io_binding: SISE's masks, masked batches and scores stay in buffers of the
            compiled core that onnxruntime reads and writes in place (IO binding); on
            the GPU nothing but the target scores crosses to the host. Default: on with
            provider="cuda", off on the CPU (where it measures no faster, RESULTS.md).
        scoring_model: an fp32, fp16 or int8 copy of the masked-pass sub-graph
            (onnx_sise_export.write_scoring_variant) that runs the masked passes.
        cuda_graph: replay the masked pass as a CUDA graph (provider="cuda" and a
            scoring_model needed); implies IO binding and fixed_batch.
        fixed_batch: every IO-bound pass runs batch_size rows, the last chunk padded.
    """

    def __init__(self, path: str | os.PathLike[str], provider: str = "cpu", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, *, prepare: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None, prefetch: bool = True,
                 io_binding: bool | None = None, scoring_model: str | os.PathLike[str] | None = None,
                 cuda_graph: bool = False, fixed_batch: bool | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.prepared: Prepared | None = None
        try:
            self.model = ExplainableModel(path, provider=provider, threads=threads, scoring_model=scoring_model,
                                          cuda_graph=cuda_graph)
        except PlainModelError:
            if not prepare:
                raise
            self.prepared = prepared_model(path, cache_dir)
            self.model = ExplainableModel(self.prepared.path, provider=provider, threads=threads,
                                          scoring_model=scoring_model, cuda_graph=cuda_graph)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.io_binding = cuda_graph or (provider == "cuda" if io_binding is None else io_binding)
        self.fixed_batch = cuda_graph if fixed_batch is None else fixed_batch

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def preprocess(self, image: ImageLike) -> tuple[np.ndarray, tuple[int, int]]:
        """(model input without batch axis, (photo height, photo width))."""
        rgb = read_rgb(image) if isinstance(image, (str, os.PathLike)) else _check_rgb(image)
        return to_model_input(rgb, self.info.input), (rgb.shape[0], rgb.shape[1])

    def explain(self, image: ImageLike, target: int | None = None, method: str = "sise", *,
                progress: bool = False, **options: object) -> Explanation:
        """Explain the score of class `target` (default: the top-1) on `image` (a path, or
        an (H, W, 3) uint8 RGB array) with `method` (one of onnx_sise.methods.METHODS);
        options are the fields of MethodOptions (mu, fusion, layer, rise_masks, seed, ...)."""
        targets = None if target is None else [target]
        return self.explain_targets(image, targets, method=method, progress=progress, **options)[0]

    def explain_targets(self, image: ImageLike, targets: Sequence[int] | None = None, *, top_k: int | None = None,
                        method: str = "sise", progress: bool = False, **options: object) -> list[Explanation]:
        """One explanation per target (given, or the top_k classes, default the top-1).
        The masked passes are shared: one pass scores every target."""
        if method not in METHODS:
            raise OptionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        unknown = set(options) - set(MethodOptions.__dataclass_fields__)
        if unknown:
            raise OptionError(f"unknown method options {sorted(unknown)}: see onnx_sise.methods.MethodOptions")
        opts = replace(MethodOptions(), **options)
        if opts.fusion not in GATES:
            raise OptionError(f"fusion must be one of {GATES}, got {opts.fusion!r}")
        if opts.mu < 0:
            raise OptionError(f"mu must be >= 0 (SISE eq. 7), got {opts.mu}")
        if opts.rise_masks < 1:
            raise OptionError(f"rise_masks must be at least 1, got {opts.rise_masks}")
        if opts.problems():
            raise OptionError("; ".join(opts.problems()))
        started = time.perf_counter()
        x, photo_size = self.preprocess(image)
        scores = self.model.scores(x)
        chosen = self._choose_targets(scores, targets, top_k)
        bar = ProgressBar(None, f"{method} {','.join(map(str, chosen))}") if progress else None
        ctx = Context(model=self.model, image=x, targets=chosen,
                      batch=np.empty((self.batch_size, *x.shape), dtype=np.float32),
                      progress=bar if bar is not None else no_progress, prefetch=self.prefetch,
                      bound=self._bound_scoring(x) if self.io_binding and method in BOUND_METHODS else None)
        results = METHODS[method](ctx, opts)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        return [Explanation(
            saliency=_to_photo(r.saliency, photo_size), target=t, label=self.info.label(t), score=float(scores[t]),
            method=method, block_maps=r.block_maps, masks_selected=r.masks_selected, masks_used=r.masks_used,
            seconds=seconds, passes=ctx.passes, details=r.details,
        ) for t, r in zip(chosen, results)]

    def _bound_scoring(self, x: np.ndarray) -> BoundScoring:
        largest = max(t.height * t.width for t in self.info.taps)
        return BoundScoring(self.model, x, self.batch_size, largest, fixed_batch=self.fixed_batch)

    def _choose_targets(self, scores: np.ndarray, targets: Sequence[int] | None, top_k: int | None) -> list[int]:
        if targets is not None and top_k is not None:
            raise TargetError("give targets or top_k, not both")
        if targets is None:
            k = 1 if top_k is None else top_k
            if not 1 <= k <= self.info.num_classes:
                raise TargetError(f"top_k must be between 1 and {self.info.num_classes}, got {k}")
            return [int(c) for c in np.argsort(-scores, kind="stable")[:k]]
        chosen = [self._check_target(t) for t in targets]
        if not chosen:
            raise TargetError("no target class given")
        if len(set(chosen)) != len(chosen):
            raise TargetError(f"target classes repeat: {chosen}")
        return chosen

    def _check_target(self, target: object) -> int:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TargetError(f"target must be a class id (int), got {target!r}")
        if not 0 <= target < self.info.num_classes:
            raise TargetError(f"class id {target} is out of range: this model has classes 0..{self.info.num_classes - 1}")
        return int(target)


def _to_photo(saliency: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """Min-max normalised (AOP eq. 4) and resized to the photo; constant maps become 0."""
    unit = np.array(saliency, dtype=np.float32, copy=True)[None]
    core.minmax_normalize(unit)
    return np.clip(core.upsample_bilinear(unit, *photo_size)[0], 0.0, 1.0)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image must be a path or an (H, W, 3) uint8 RGB array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image
