"""`Explainer`: owns the onnxruntime session, the preprocessing and target choice, and
runs an explanation method over them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Union

import numpy as np

from . import core
from .errors import ImageError, TargetError
from .fusion import GATES, fuse_block_maps
from .image_io import read_rgb, to_model_input
from .model_info import ModelInfo
from .progress import ProgressBar
from .session import ExplainableModel
from .sise import BlockMap, average_gradients, block_visualization, select_positive

ImageLike = Union[str, os.PathLike, np.ndarray]
METHODS = ("sise",)
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Explanation:
    """One explanation.

    saliency: (H, W) float32 in [0, 1], the photo's own size.
    block_maps: per block name, its visualisation map (model input size), in [0, 1].
    masks_used: per block name, the masks scored (= masked forward passes).
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

    @property
    def forward_passes(self) -> int:
        return sum(self.masks_used.values())

    def summary(self) -> dict[str, object]:
        """JSON-ready description (no arrays)."""
        return {
            "target": self.target, "label": self.label, "score": round(self.score, 6), "method": self.method,
            "masks_selected": self.masks_selected, "masks_used": self.masks_used,
            "forward_passes": self.forward_passes, "seconds": round(self.seconds, 3),
        }


class Explainer:
    """Explains an explainable ONNX's predictions.

    Args:
        path: the `*.sise.onnx` written by `python -m onnx_sise export`.
        provider: "cpu", or "cuda" with onnxruntime-gpu.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        batch_size: masked inputs per forward pass.
    """

    def __init__(self, path: str | os.PathLike[str], provider: str = "cpu", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = ExplainableModel(path, provider=provider, threads=threads)
        self.batch_size = batch_size

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def preprocess(self, image: ImageLike) -> tuple[np.ndarray, tuple[int, int]]:
        """(model input without batch axis, (photo height, photo width))."""
        rgb = read_rgb(image) if isinstance(image, (str, os.PathLike)) else _check_rgb(image)
        return to_model_input(rgb, self.info.input), (rgb.shape[0], rgb.shape[1])

    def explain(self, image: ImageLike, target: int | None = None, method: str = "sise", *, mu: float = 0.0,
                fusion: str = "hard", progress: bool = False) -> Explanation:
        """Explain the model's score for class `target` (default: its top-1) on `image`
        (a path, or an (H, W, 3) uint8 RGB array). SISE with threshold `mu` (eq. 7) and
        the fusion gate of `fuse_block_maps` ("hard" as in the paper, or "soft")."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if fusion not in GATES:
            raise ValueError(f"fusion must be one of {GATES}, got {fusion!r}")
        started = time.perf_counter()
        x, photo_size = self.preprocess(image)
        scores = self.model.scores(x)
        target = self._check_target(int(np.argmax(scores)) if target is None else target)
        weights = np.zeros(self.info.num_classes, np.float32)
        weights[target] = 1.0
        features = self.model.block_features(x, weights)
        selections = [select_positive(average_gradients(f.gradients), mu) for f in features]
        bar = ProgressBar(sum(s.size for s in selections), f"SISE class {target}") if progress else None
        batch = np.empty((self.batch_size, *x.shape), dtype=np.float32)
        blocks: list[BlockMap] = []
        for tap, feat, selected in zip(self.info.taps, features, selections):
            blocks.append(block_visualization(self.model, x, feat, selected, target, batch, tap.name,
                                              bar if bar is not None else _no_progress))
        if bar is not None:
            bar.close()
        fused = fuse_block_maps(np.stack([b.saliency for b in blocks]), gate=fusion)
        saliency = np.clip(core.upsample_bilinear(fused[None], *photo_size)[0], 0.0, 1.0)
        block_maps = {b.name: _unit(b.saliency) for b in blocks}
        return Explanation(
            saliency=saliency, target=target, label=self.info.label(target), score=float(scores[target]),
            method=method, block_maps=block_maps, masks_selected={b.name: b.selected for b in blocks},
            masks_used={b.name: b.used for b in blocks}, seconds=time.perf_counter() - started,
        )

    def _check_target(self, target: int) -> int:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TargetError(f"target must be a class id (int), got {target!r}")
        if not 0 <= target < self.info.num_classes:
            raise TargetError(f"class id {target} is out of range: this model has classes 0..{self.info.num_classes - 1}")
        return int(target)


def _no_progress(n: int) -> None:
    return None


def _unit(saliency: np.ndarray) -> np.ndarray:
    out = np.array(saliency, dtype=np.float32, copy=True)[None]
    core.minmax_normalize(out)
    return out[0]


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image must be a path or an (H, W, 3) uint8 RGB array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(f"image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image
