"""SISE's masked passes with onnxruntime IO binding: the feature maps, masks, masked
batch, scores and accumulated maps live in buffers of the compiled core on the
session's device (the GPU with the CUDA provider), which onnxruntime reads and writes
in place. Only the few target scores of each pass come to the host."""

from __future__ import annotations

import numpy as np

from ... import kernels
from ...cancel import NEVER, Cancellation
from ...model.session import ExplainableModel
from ...progress import Progress, no_progress


class IoBindingPipeline:
    """The masked-pass pipeline of one image on one device ("cpu" or "cuda"), for at
    most `batch_size` masks per pass and feature maps of at most `feature_pixels` pixels.
    With `fixed_batch`, every pass runs `batch_size` rows (the tail of the last chunk is
    scored and ignored): the fixed shapes and addresses that CUDA graphs replay."""

    def __init__(self, model: ExplainableModel, image: np.ndarray, batch_size: int, feature_pixels: int,
                 fixed_batch: bool = False) -> None:
        self.model = model
        self.device = "cuda" if model.provider == "cuda" else "cpu"
        spec = model.info.input
        self.height, self.width = spec.height, spec.width
        self.batch_size = batch_size
        plane = self.height * self.width
        self.image = kernels.Buffer(image.nbytes, self.device)
        self.image.upload(np.ascontiguousarray(image, dtype=np.float32))
        self.features = kernels.Buffer(batch_size * feature_pixels * 4, self.device)
        self.masks = kernels.Buffer(batch_size * plane * 4, self.device)
        self.flags = kernels.Buffer(batch_size, self.device)
        self.batch = kernels.Buffer(batch_size * image.size * 4, self.device)
        self.batch.zero()
        self.fixed_batch = fixed_batch
        self.scores = kernels.Buffer(batch_size * model.info.num_classes * 4, self.device)
        self.weights = kernels.Buffer(batch_size * 4, self.device)
        self.passes = 0

    def run(self, count: int, targets: list[int]) -> np.ndarray:
        """Psi of `targets` for the first `count` masked inputs of the bound batch, (T, count)."""
        info = self.model.info
        names, spec = info.graph, info.input
        rows = self.batch_size if self.fixed_batch else count
        shape = [rows, spec.channels, spec.height, spec.width] if spec.layout == "NCHW" \
            else [rows, spec.height, spec.width, spec.channels]
        binding = self.model.scoring_session.io_binding()
        binding.bind_input(names.masked_batch, self.device, 0, np.float32, shape, self.batch.address)
        binding.bind_output(names.batch_scores, self.device, 0, np.float32, [rows, info.num_classes], self.scores.address)
        self.model.scoring_session.run_with_iobinding(binding)
        self.passes += count
        return self.scores.download_columns(count, info.num_classes, targets)

    def block_contributions(self, activations: np.ndarray, representatives: np.ndarray, multiplicity: np.ndarray,
                            targets: list[int], progress: Progress = no_progress,
                            cancellation: Cancellation = NEVER) -> tuple[np.ndarray, np.ndarray]:
        """sum over the masks m_k (k in `representatives`, varying maps, SISE eq. 7) of
        multiplicity[t, k] * Psi_c(I . m_k) * m_k / sum(m_k) (eq. 10-11) for each target t
        (multiplicity: how many of the target's maps give that mask). Returns (sums
        (T, H, W) float64, masks counted (T,))."""
        spec = self.model.info.input
        _, h, w = activations.shape
        accumulators = [kernels.Buffer(self.height * self.width * 8, self.device) for _ in targets]
        for acc in accumulators:
            acc.zero()
        used = np.zeros(len(targets), dtype=np.int64)
        flags = np.empty(self.batch_size, np.uint8)
        for start in range(0, representatives.size, self.batch_size):
            cancellation.check(self.passes)
            rows = np.arange(start, min(start + self.batch_size, representatives.size))
            count = rows.size
            self.features.upload(np.ascontiguousarray(activations[representatives[rows]], dtype=np.float32))
            kernels.masks_from_features(self.features, count, h, w, self.height, self.width, self.masks, self.flags)
            self.flags.download(flags)
            kernels.masked_batch_into(self.image, spec.channels, self.height, self.width, spec.layout, self.masks,
                                   count, self.batch)
            scores = self.run(count, targets)
            progress(count)
            for t in range(len(targets)):
                counts = np.where(flags[:count] != 0, multiplicity[t, rows], 0)
                if counts.any():
                    self.weights.upload((scores[t] * counts).astype(np.float32))
                    kernels.accumulate_into(self.masks, count, self.height, self.width, self.weights, accumulators[t])
                    used[t] += int(counts.sum())
        sums = np.empty((len(targets), self.height, self.width), dtype=np.float64)
        for t, acc in enumerate(accumulators):
            acc.download(sums[t])
        return sums, used
