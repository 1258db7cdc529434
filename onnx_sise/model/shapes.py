"""An explainable ONNX's tensors checked against its metadata: the shapes and element
types onnxruntime declares for every input and output the explain path feeds or reads,
before any of them is used, and the shape of every array a run returns. A file whose
graph and metadata disagree (one of them edited) is refused in one line instead of
failing later in onnxruntime, NumPy or OpenCV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from .info import InputSpec, ModelInfo

# The mask-gradient sub-graph's fixed batch (the exporter writes 20): its buffers are
# allocated from the graph's declared shape.
MAX_MASK_BATCH = 1024
FLOAT = "tensor(float)"
EXPORT_AGAIN = "the graph does not match its metadata (the file was altered?): export the model again"

# A declared shape to compare with: an int must match, None is any size (a batch axis).
Dims = tuple[int | None, ...]
Declared = dict[str, tuple[list | None, str]]


def declared_tensors(session: ort.InferenceSession) -> Declared:
    """(declared shape, element type) of every input, overridable initializer and output."""
    nodes = [*session.get_inputs(), *session.get_overridable_initializers(), *session.get_outputs()]
    return {node.name: (node.shape, node.type) for node in nodes}


def image_dims(spec: InputSpec, batch: int | None) -> Dims:
    if spec.layout == "NCHW":
        return batch, spec.channels, spec.height, spec.width
    return batch, spec.height, spec.width, spec.channels


def check_declared(tensors: Declared, expected: dict[str, Dims], source: str) -> None:
    """Each tensor of `expected` is declared float32 with a shape that fits its dims."""
    for name, dims in expected.items():
        if name not in tensors:
            raise ModelError(f"{source} lacks the tensor {name!r}: export the model again with this version of onnx_sise")
        shape, kind = tensors[name]
        if kind != FLOAT:
            raise ModelError(f"{source}: tensor {name!r} is {kind[:40]}, not float32: {EXPORT_AGAIN}")
        if not _fits(shape, dims):
            raise ModelError(f"{source}: tensor {name!r} has shape {_shown(shape)}, its metadata says "
                             f"{_shown(dims)}: {EXPORT_AGAIN}")


def _fits(shape: Sequence | None, dims: Dims) -> bool:
    if shape is None or len(shape) != len(dims):
        return False
    return all(not isinstance(have, int) or want is None or have == want for have, want in zip(shape, dims))


def _shown(shape: Sequence | None) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None or not isinstance(d, int) else str(d) for d in list(shape)[:8]) + "]"


def check_shapes(session: ort.InferenceSession, info: ModelInfo, source: str) -> None:
    """The gradient and scoring sub-graphs' tensors against the metadata."""
    g, classes = info.graph, info.num_classes
    expected: dict[str, Dims] = {
        g.image: image_dims(info.input, 1), g.masked_batch: image_dims(info.input, None),
        g.target_weights: (1, classes), g.logit_weights: (1, classes),
        g.logits: (None, classes), g.scores: (None, classes), g.batch_scores: (None, classes)}
    for tap in info.taps:
        expected[tap.activation_output] = expected[tap.gradient_output] = (None, tap.channels, tap.height, tap.width)
    check_declared(declared_tensors(session), expected, source)


def check_scoring_shapes(session: ort.InferenceSession, info: ModelInfo, source: str) -> None:
    """A scoring variant's masked batch and scores against the model's metadata."""
    g = info.graph
    check_declared(declared_tensors(session), {g.masked_batch: image_dims(info.input, None),
                                               g.batch_scores: (None, info.num_classes)}, source)


def mask_geometry(session: ort.InferenceSession, info: ModelInfo, source: str) -> tuple[int, int]:
    """(batch, mask size) of the mask-gradient sub-graph, its tensors checked."""
    g, spec = info.graph, info.input
    tensors = declared_tensors(session)
    check_declared(tensors, {g.masks: (None, 1, None, None)}, source)
    batch, _, size, _ = tensors[g.masks][0]  # type: ignore[misc]
    if not all(isinstance(d, int) for d in (batch, size)) or not (
            1 <= batch <= MAX_MASK_BATCH and 1 <= size <= max(spec.height, spec.width)):
        raise ModelError(f"{source}: mask input {g.masks!r} has shape {_shown(tensors[g.masks][0])}: expected a "
                         f"fixed batch of 1 to {MAX_MASK_BATCH} square masks no larger than the input; {EXPORT_AGAIN}")
    expected: dict[str, Dims] = {
        g.masks: (batch, 1, size, size), g.mask_image: image_dims(spec, 1), g.mask_baseline: image_dims(spec, 1),
        g.mask_target_weights: (1, info.num_classes), g.mask_scores: (None,), g.mask_gradients: (None, 1, size, size)}
    if g.mask_noise in tensors:
        expected[g.mask_noise] = image_dims(spec, None)
    check_declared(tensors, expected, source)
    return batch, size


def expect_shape(array: np.ndarray, shape: tuple[int, ...], name: str, source: str) -> None:
    """Refuse what a run returned unless it has `shape`."""
    if array.shape != shape:
        raise ModelError(f"{source}: onnxruntime returned {name!r} of shape {_shown(array.shape)}, expected "
                         f"{_shown(shape)}: {EXPORT_AGAIN}")
