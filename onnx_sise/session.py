"""The explainable ONNX in onnxruntime: one session serves the gradient call (batch 1)
and the batched masked forward passes (only `batch_scores` is computed for those)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import ModelError, PlainModelError
from .model_files import open_session
from .model_info import METADATA_KEY, ModelInfo

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class BlockFeatures:
    """Activations A (N, h, w) and gradients dPsi/dA (N, h, w) of one block, batch axis dropped."""

    activations: np.ndarray
    gradients: np.ndarray


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return options


class ExplainableModel:
    """An explainable ONNX loaded in onnxruntime, with its metadata validated.

    `path` is the model file or its bytes. `options` and `providers` (as
    onnxruntime takes them, names or (name, options) pairs) replace the ones made from
    `provider` and `threads`. One session serves every thread: onnxruntime's run() is
    thread-safe, and nothing here changes after construction."""

    def __init__(self, path: str | os.PathLike[str] | bytes, provider: str = "cpu", threads: int | None = None, *,
                 options: ort.SessionOptions | None = None,
                 providers: Sequence[str | tuple[str, dict]] | None = None) -> None:
        in_memory = isinstance(path, (bytes, bytearray, memoryview))
        self.path = None if in_memory else Path(path)
        self.source = "the model bytes" if in_memory else str(self.path)
        if self.path is not None and not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}" if not self.path.exists()
                             else f"{self.path} is not a file")
        if providers is None:
            if provider not in PROVIDERS:
                raise ModelError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
            if PROVIDERS[provider] not in ort.get_available_providers():
                raise ModelError(f"onnxruntime here has no {PROVIDERS[provider]}: install onnx_sise[gpu] for CUDA")
            providers = [PROVIDERS[provider]]
        self.session = open_session(bytes(path) if in_memory else self.path, self.source,
                                    options or session_options(threads), providers)
        self.provider = provider
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise PlainModelError(
                f"{self.source} is a plain ONNX model, not an explainable one: "
                f"export it first with `python -m onnx_sise export` (see README)"
            )
        self.info = ModelInfo.from_json(metadata[METADATA_KEY])
        self._check_outputs()

    def _check_outputs(self) -> None:
        present = {o.name for o in self.session.get_outputs()}
        g = self.info.graph
        wanted = [g.logits, g.scores, g.batch_scores]
        wanted += [t.activation_output for t in self.info.taps] + [t.gradient_output for t in self.info.taps]
        missing = [name for name in wanted if name not in present]
        feeds = {i.name for i in self.session.get_inputs()} | {i.name for i in self.session.get_overridable_initializers()}
        missing += [name for name in (g.image, g.target_weights, g.logit_weights, g.masked_batch) if name not in feeds]
        if missing:
            raise ModelError(f"{self.source} lacks the tensors {', '.join(missing[:3])}: export the model again "
                             "with this version of onnx_sise")

    def scores(self, image: np.ndarray) -> np.ndarray:
        """Psi for every class, (classes,), of one preprocessed image without batch axis."""
        g = self.info.graph
        (scores,) = self.session.run([g.scores], {g.image: image[None]})
        return scores[0]

    def block_features(self, image: np.ndarray, target_weights: np.ndarray,
                       logit_weights: np.ndarray | None = None) -> list[BlockFeatures]:
        """One gradient call: per tap, A and d(sum_c w_c Psi_c + sum_c u_c y_c)/dA, with
        target_weights w over the scores Psi and logit_weights u over the raw outputs y."""
        g = self.info.graph
        names = [t.activation_output for t in self.info.taps] + [t.gradient_output for t in self.info.taps]
        feeds = {g.image: image[None], g.target_weights: target_weights[None]}
        if logit_weights is not None:
            feeds[g.logit_weights] = logit_weights[None]
        outputs = self.session.run(names, feeds)
        n = len(self.info.taps)
        return [BlockFeatures(a[0], d[0]) for a, d in zip(outputs[:n], outputs[n:])]

    def batch_scores(self, batch: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """Psi of `classes` for each masked input of `batch`, (B, len(classes))."""
        g = self.info.graph
        (scores,) = self.session.run([g.batch_scores], {g.masked_batch: batch})
        return scores[:, list(classes)]
