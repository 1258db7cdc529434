"""Shape changes and data movement: Reshape back, inverse permutations, Slice and Concat,
and for any op that only moves elements, an index map read off the op itself."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .base import Step, rule, run_single, unbroadcast


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(s: Step) -> list[str | None]:
    return [s.e.reshape(s.dy[0], s.shape(s.x()))] + [None] * (len(s.node.input) - 1)


@rule("Identity")
def _identity(s: Step) -> list[str | None]:
    return [s.dy[0]]


@rule("Dropout")
def _dropout(s: Step) -> list[str | None]:
    if s.x(2) and s.value(2) is not None and bool(np.asarray(s.value(2))):
        raise s.refuse("training_mode is true")
    return [s.dy[0]] + [None] * (len(s.node.input) - 1)


@rule("Cast", "CastLike")
def _cast(s: Step) -> list[str | None]:
    x = s.x()
    if not s.graph.is_float(x):
        return [None] * len(s.node.input)
    target = helper.np_dtype_to_tensor_dtype(s.graph.dtypes[x])
    return [s.e.op("Cast", [s.dy[0]], to=target)] + [None] * (len(s.node.input) - 1)


@rule("Transpose")
def _transpose(s: Step) -> list[str | None]:
    rank = len(s.shape(s.x()))
    perm = list(s.attr("perm", list(range(rank))[::-1]))
    return [s.e.op("Transpose", [s.dy[0]], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat")
def _concat(s: Step) -> list[str | None]:
    e = s.e
    rank = len(s.shape(s.y()))
    axis = int(s.attr("axis")) % rank
    grads: list[str | None] = []
    start = 0
    for x, want in zip(s.node.input, s.wants):
        size = s.shape(x)[axis]
        if want:
            grads.append(e.op("Slice", [s.dy[0], e.const([start]), e.const([start + size]), e.const([axis])]))
        else:
            grads.append(None)
        start += size
    return grads


@rule("Split")
def _split(s: Step) -> list[str | None]:
    e = s.e
    rank = len(s.shape(s.x()))
    axis = int(s.attr("axis", 0)) % rank
    parts = [dy if dy is not None else e.zeros(s.shape(y)) for dy, y in zip(s.dy, s.node.output)]
    return [e.op("Concat", parts, axis=axis)] + [None] * (len(s.node.input) - 1)


@rule("Expand")
def _expand(s: Step) -> list[str | None]:
    return [unbroadcast(s.e, s.dy[0], s.shape(s.y()), s.shape(s.x())), None]


@rule("Pad")
def _pad(s: Step) -> list[str | None]:
    """Constant mode: cut the padding off dY (Slice), give cropped elements zeros (Pad);
    the other modes read elements twice and go through the index map."""
    e = s.e
    pads = s.value(1) if len(s.node.input) > 1 else np.asarray(s.attr("pads"), np.int64)
    axes = s.value(3) if len(s.node.input) > 3 and s.x(3) else None
    if s.attr("mode", "constant") != "constant" or pads is None or axes is not None:
        return _gather_back(s)
    x_shape, y_shape = s.shape(s.x()), s.shape(s.y())
    rank = len(x_shape)
    begins, ends = np.asarray(pads[:rank], np.int64), np.asarray(pads[rank:], np.int64)
    grad = s.dy[0]
    if (begins > 0).any() or (ends > 0).any():
        starts = np.maximum(begins, 0)
        stops = np.asarray(y_shape, np.int64) - np.maximum(ends, 0)
        grad = e.op("Slice", [grad, e.const(starts), e.const(stops), e.const(np.arange(rank))])
    if (begins < 0).any() or (ends < 0).any():
        grad = e.op("Pad", [grad, e.const(np.concatenate([np.maximum(-begins, 0), np.maximum(-ends, 0)]))])
    return [grad] + [None] * (len(s.node.input) - 1)


@rule("Slice", "Gather", "GatherElements", "GatherND", "Tile", "DepthToSpace", "SpaceToDepth",
      "ReverseSequence", "Compress")
def _data_movement(s: Step) -> list[str | None]:
    return _gather_back(s)


@rule("Resize", "Upsample")
def _resize(s: Step) -> list[str | None]:
    if s.attr("mode", "nearest") != "nearest":
        return _linear_back(s)
    return _gather_back(s)


def _gather_back(s: Step) -> list[str | None]:
    """Pure data movement with constant indices: where each output element comes from is
    learned by running the op once on the element numbers 1..n of its input (0 marks
    padding); the gradient gathers or scatter-adds dY back to those places."""
    e = s.e
    x = s.x()
    x_shape = s.shape(x)
    if any(s.graph.constant(i) is None for i in s.node.input[1:] if i):
        raise s.refuse("its indices or sizes are computed from the image")
    size = int(np.prod(x_shape))
    numbers = np.arange(1, size + 1, dtype=np.float64).reshape(x_shape)
    feeds = {x: numbers}
    if s.node.op_type == "Pad" and len(s.node.input) > 2 and s.x(2):  # the fill must not look like an element
        feeds[s.x(2)] = np.zeros(s.shape(s.x(2)), np.float64)
    source = np.rint(np.asarray(run_single(s.node, feeds, s.graph)[0], np.float64)).astype(np.int64).reshape(-1)
    if source.size != int(np.prod(s.shape(s.y()))):
        raise s.refuse("the op did not reproduce its output shape on the index tensor")
    flat_dy = e.reshape(s.dy[0], [-1])
    valid = np.nonzero(source > 0)[0]
    origins = source[valid] - 1
    counts = np.bincount(origins, minlength=size)
    if counts.max(initial=0) <= 1:  # each input element read at most once: one Gather
        inverse = np.full(size, source.size, np.int64)
        inverse[origins] = valid
        padded = e.op("Concat", [flat_dy, e.zeros([1])], axis=0)
        grad = e.op("Gather", [padded, e.const(inverse)], axis=0)
    else:
        picked = flat_dy if valid.size == source.size else e.op("Gather", [flat_dy, e.const(valid)], axis=0)
        grad = e.op("ScatterElements", [e.zeros([size]), e.const(origins), picked], axis=0, reduction="add")
    return [e.reshape(grad, x_shape)] + [None] * (len(s.node.input) - 1)


def _linear_back(s: Step) -> list[str | None]:
    """Resize with a fixed linear map along each resized axis: the per-axis matrices are
    read off the op on unit vectors, and their transposes applied with MatMul."""
    e = s.e
    x_shape, y_shape = s.shape(s.x()), s.shape(s.y())
    axes = [i for i, (a, b) in enumerate(zip(x_shape, y_shape)) if a != b]
    if any(s.graph.constant(i) is None for i in s.node.input[1:] if i):
        raise s.refuse("its scales or sizes are computed from the image")
    grad = s.dy[0]
    rank = len(x_shape)
    current = list(y_shape)
    for axis in axes:
        probe = np.zeros(x_shape, np.float64)
        matrix = np.zeros((y_shape[axis], x_shape[axis]))
        for j in range(x_shape[axis]):
            probe[...] = 0  # one-hot along `axis`, constant along the others (which resize it to 1)
            index: list[object] = [slice(None)] * rank
            index[axis] = j
            probe[tuple(index)] = 1.0
            out = np.asarray(run_single(s.node, {s.x(): probe}, s.graph)[0], np.float64)
            line: list[object] = [0] * rank
            line[axis] = slice(None)
            matrix[:, j] = out[tuple(line)]
        # grad has shape `current`; move `axis` last, multiply by the matrix, move back.
        perm = [i for i in range(rank) if i != axis] + [axis]
        moved = e.op("Transpose", [grad], perm=perm)
        product = e.op("MatMul", [moved, e.const(matrix.astype(e.dtype))])
        grad = e.op("Transpose", [product], perm=[int(i) for i in np.argsort(perm)])
        current[axis] = x_shape[axis]
    return [grad] + [None] * (len(s.node.input) - 1)
