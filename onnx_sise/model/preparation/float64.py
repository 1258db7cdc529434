"""An ONNX model converted to float64, for onnx's reference evaluator: the exact check
of a gradient graph without torch (docs/design.md section 4, step 8; onnxruntime has no
float64 convolution)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .geometry import resolve_pads, window_taps

FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE


def _widen_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor.data_type != FLOAT:
        return tensor
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)


def _widen_graph(graph: onnx.GraphProto) -> None:
    for coll in (graph.input, graph.output, graph.value_info):
        for value in coll:
            if value.type.tensor_type.elem_type == FLOAT:
                value.type.tensor_type.elem_type = DOUBLE
    widened = [_widen_tensor(t) for t in graph.initializer]
    del graph.initializer[:]
    graph.initializer.extend(widened)
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type in ("Cast", "EyeLike", "RandomNormalLike") and attribute.name in ("to", "dtype") \
                    and attribute.i == FLOAT:
                attribute.i = DOUBLE
            elif attribute.type == onnx.AttributeProto.TENSOR:
                attribute.t.CopyFrom(_widen_tensor(attribute.t))
            elif attribute.type == onnx.AttributeProto.GRAPH:
                _widen_graph(attribute.g)


def widened(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that computes in float64 wherever it computed in float32."""
    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    _widen_graph(wide.graph)
    return wide


def _exact_ops() -> list[type]:
    """Reference kernels replaced where onnx's own are inexact or slow for this check:
    Erf and Gelu (float32-accurate approximations), ScatterElements (a Python loop per
    element), Conv and ConvTranspose (a Python loop per group; wrong shapes for groups of
    more than one channel), MaxPool (a Python loop per output; indices per channel), Pad (no negative pads)."""
    import math

    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.op_pad import Pad_18 as ReferencePad

    class Erf(OpRun):
        def _run(self, x):  # noqa: ANN001, ANN202
            return (np.vectorize(math.erf, otypes=[x.dtype])(x),)

    class ScatterElements(OpRun):
        def _run(self, data, indices, updates, axis=None, reduction=None):  # noqa: ANN001, ANN202
            axis = (axis or 0) % data.ndim
            out = np.array(data, copy=True)
            index = list(np.indices(indices.shape, sparse=True))
            index[axis] = np.where(indices < 0, indices + data.shape[axis], indices)
            if reduction == "add":
                np.add.at(out, tuple(index), updates)
            elif reduction in (None, "none"):
                out[tuple(index)] = updates
            else:
                raise NotImplementedError(f"ScatterElements reduction {reduction}")
            return (out,)

    class MaxPool(OpRun):
        def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,  # noqa: ANN001, ANN202
                 storage_order=None, strides=None):
            values, indices = _max_pool(x, dict(auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                                                kernel_shape=kernel_shape, pads=pads, strides=strides))
            return (values, indices) if len(self.output) > 1 and self.output[1] else (values,)

    class Gelu(OpRun):
        def _run(self, x, approximate="none"):  # noqa: ANN001, ANN202
            if approximate == "tanh":
                return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),)
            return (0.5 * x * (1 + np.vectorize(math.erf, otypes=[x.dtype])(x / math.sqrt(2))),)

    class Pad(ReferencePad):
        def _run(self, data, pads, constant_value=None, axes=None, mode=None):  # noqa: ANN001, ANN202
            pads = np.asarray(pads, np.int64)
            if axes is not None or (pads >= 0).all():
                return super()._run(data, pads, constant_value, axes, mode=mode)
            rank = data.ndim  # negative pads crop (onnxruntime does; the reference refuses)
            crop = tuple(slice(max(-b, 0), size - max(-e, 0)) for b, e, size in zip(pads[:rank], pads[rank:], data.shape))
            return super()._run(data[crop], np.maximum(pads, 0), constant_value, None, mode=mode)

    class Conv(OpRun):
        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None,  # noqa: ANN001, ANN202, N803
                 pads=None, strides=None):
            return (_conv(X, W, B, auto_pad or "NOTSET", dilations, group or 1, pads, strides),)

    class ConvTranspose(OpRun):
        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None,  # noqa: ANN001, ANN202, N803
                 output_padding=None, output_shape=None, pads=None, strides=None):
            if output_shape is not None or auto_pad not in (None, "NOTSET"):
                raise NotImplementedError("ConvTranspose with output_shape or auto_pad")
            return (_conv_transpose(X, W, B, dilations, group or 1, output_padding, pads, strides),)

    return [Erf, Gelu, ScatterElements, Conv, ConvTranspose, MaxPool, Pad]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, auto_pad: str, dilations: list | None, group: int,
          pads: list | None, strides: list | None) -> np.ndarray:
    """Grouped N-D convolution, one matrix product per kernel offset (the reference loops per group)."""
    n, c, *spatial = x.shape
    m, _, *kernel = w.shape
    rank = len(spatial)
    strides, dilations = list(strides or [1] * rank), list(dilations or [1] * rank)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-size // s) for size, s in zip(spatial, strides)]
    else:
        out = None
    pads = resolve_pads(auto_pad, pads, spatial, kernel, strides, dilations, out or spatial)
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[rank + i]) for i in range(rank)])
    out = [(p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(padded.shape[2:], kernel, strides, dilations)]
    xg = padded.reshape(n, group, c // group, *padded.shape[2:])
    wg = w.reshape(group, m // group, c // group, *kernel)
    y = np.zeros((n, group, m // group, int(np.prod(out))), np.result_type(x, w))
    for offset in np.ndindex(*kernel):
        window = tuple(slice(k * d, k * d + s * (o - 1) + 1, s) for k, d, s, o in zip(offset, dilations, strides, out))
        columns = xg[(slice(None),) * 3 + window].reshape(n, group, c // group, -1)
        y += np.matmul(wg[(...,) + offset][None], columns)  # (1, g, m, c) @ (n, g, c, HW): BLAS
    y = y.reshape(n, m, *out)
    return y + b.reshape(1, m, *([1] * rank)) if b is not None else y


def _conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dilations: list | None, group: int,
                    output_padding: list | None, pads: list | None, strides: list | None) -> np.ndarray:
    """Grouped N-D transposed convolution: each kernel offset adds one matrix product."""
    n, c, *spatial = x.shape
    _, m_per_group, *kernel = w.shape
    rank = len(spatial)
    strides, dilations = list(strides or [1] * rank), list(dilations or [1] * rank)
    pads = list(pads or [0] * (2 * rank))
    extra = list(output_padding or [0] * rank)
    full = [s * (size - 1) + (k - 1) * d + 1 + e for size, k, s, d, e in zip(spatial, kernel, strides, dilations, extra)]
    xg = x.reshape(n, group, c // group, -1)
    wg = np.swapaxes(w.reshape(group, c // group, m_per_group, *kernel), 1, 2)  # (g, m, c, *kernel)
    y = np.zeros((n, group, m_per_group, *full), np.result_type(x, w))
    for offset in np.ndindex(*kernel):
        window = tuple(slice(k * d, k * d + s * (size - 1) + 1, s) for k, d, s, size in zip(offset, dilations, strides, spatial))
        y[(slice(None),) * 3 + window] += np.matmul(wg[(...,) + offset][None], xg).reshape(n, group, m_per_group, *spatial)
    crop = tuple(slice(pads[i], full[i] - pads[rank + i]) for i in range(rank))
    y = y.reshape(n, group * m_per_group, *full)[(slice(None), slice(None)) + crop]
    return y + b.reshape(1, -1, *([1] * rank)) if b is not None else y


def _max_pool(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool's values and flat arg-max indices over N*C*H*W, as onnxruntime computes
    them, vectorised (the reference evaluator loops in Python per output element, and its
    indices are per channel and off for overlapping windows)."""
    spatial = x.shape[2:]
    n = len(spatial)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides") or [1] * n)
    dilations = list(attrs.get("dilations") or [1] * n)
    auto_pad = attrs.get("auto_pad") or "NOTSET"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-size // s) for size, s in zip(spatial, strides)]
        pads = resolve_pads(auto_pad, None, spatial, kernel, strides, dilations, out)
    else:
        pads = resolve_pads(auto_pad, attrs.get("pads"), spatial, kernel, strides, dilations, spatial)
        out = []
        for i, (size, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
            span = size + pads[i] + pads[n + i] - ((k - 1) * d + 1)
            count = (-(-span // s) if attrs.get("ceil_mode") else span // s) + 1
            if attrs.get("ceil_mode") and (count - 1) * s >= size + pads[i]:
                count -= 1  # no window may start in the end padding
            out.append(count)
    taps = [window_taps(size, o, k, s, d, b)
            for size, o, k, s, d, b in zip(spatial, out, kernel, strides, dilations, pads[:n])]
    grids = np.meshgrid(*[t.reshape(-1) for t in taps], indexing="ij")  # every (window, tap) pair per axis
    valid = np.ones(grids[0].shape, bool)
    for grid, size in zip(grids, spatial):
        valid &= (grid >= 0) & (grid < size)
    flat_spatial = np.ravel_multi_index([np.clip(g, 0, size - 1) for g, size in zip(grids, spatial)], spatial)
    values = x.reshape(*x.shape[:2], -1)[:, :, flat_spatial.reshape(-1)].reshape(*x.shape[:2], *grids[0].shape)
    values = np.where(valid, values, -np.inf)
    shape = [d for t in taps for d in t.shape]  # (out_0, k_0, out_1, k_1, ...): outs first, taps last
    order = [2 * i for i in range(n)] + [2 * i + 1 for i in range(n)]
    values = values.reshape(*x.shape[:2], *shape).transpose([0, 1, *(2 + o for o in order)])
    values = values.reshape(*x.shape[:2], *out, -1)
    best = values.argmax(axis=-1)
    picked = flat_spatial.reshape(shape).transpose(order).reshape(*out, -1)
    spatial_index = np.take_along_axis(np.broadcast_to(picked, (*x.shape[:2], *picked.shape)), best[..., None], -1)[..., 0]
    channel_offset = (np.arange(x.shape[0])[:, None] * x.shape[1] + np.arange(x.shape[1])[None, :]) * int(np.prod(spatial))
    indices = spatial_index + channel_offset.reshape(*x.shape[:2], *([1] * n))
    return np.take_along_axis(values, best[..., None], -1)[..., 0], indices.astype(np.int64)


class Float64Evaluator:
    """`model` converted to float64 once, run as often as needed by onnx's reference
    evaluator (a big model's weights are copied once, not per run)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx.reference import ReferenceEvaluator

        self._evaluator = ReferenceEvaluator(widened(model), new_ops=_exact_ops())

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        feeds = {k: np.asarray(v, np.float64) if np.asarray(v).dtype == np.float32 else v for k, v in feeds.items()}
        return self._evaluator.run(outputs, feeds)


def evaluate(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    """Run `model` once in float64 with onnx's reference evaluator."""
    return Float64Evaluator(model).run(feeds, outputs)
