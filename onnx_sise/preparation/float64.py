"""An ONNX model converted to float64, for onnx's reference evaluator: the exact check
of a gradient graph without torch (DESIGN.md section 3, step 4; onnxruntime has no
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
    Erf (a float32-accurate approximation), ScatterElements (a Python loop per element),
    ConvTranspose with groups of more than one channel (wrong shapes)."""
    import math

    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.op_conv_transpose import ConvTranspose as ReferenceConvTranspose
    from onnx.reference.ops.op_max_pool import MaxPool as ReferenceMaxPool
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

    class ConvTranspose(ReferenceConvTranspose):
        def _run(self, X, W, B=None, group=None, **kwargs):  # noqa: ANN001, ANN202, N803
            group = group or 1
            if group == 1 or W.shape[0] == group and W.shape[1] == 1 and X.shape[1] == group:
                return super()._run(X, W, B, group=group, **kwargs)
            step_in, step_out = X.shape[1] // group, W.shape[1]
            parts = [super(ConvTranspose, self)._run(X[:, g * step_in:(g + 1) * step_in], W[g * step_in:(g + 1) * step_in],
                                                     None if B is None else B[g * step_out:(g + 1) * step_out],
                                                     group=1, **kwargs)[0] for g in range(group)]
            return (np.concatenate(parts, axis=1),)

    class MaxPool(ReferenceMaxPool):
        def _run(self, x, **kwargs):  # noqa: ANN001, ANN202
            values = super()._run(x, **kwargs)
            if len(self.output) < 2 or not self.output[1]:
                return values
            return values[0], _max_pool_indices(x, values[0].shape, kwargs)

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

    return [Erf, Gelu, ScatterElements, ConvTranspose, MaxPool, Pad]


def _max_pool_indices(x: np.ndarray, out_shape: tuple[int, ...], attrs: dict) -> np.ndarray:
    """MaxPool's flat arg-max indices over N*C*H*W, as onnxruntime computes them (the
    reference evaluator's are per channel and off for overlapping windows)."""
    spatial = x.shape[2:]
    n = len(spatial)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides") or [1] * n)
    dilations = list(attrs.get("dilations") or [1] * n)
    pads = resolve_pads(attrs.get("auto_pad") or "NOTSET", attrs.get("pads"), spatial, kernel, strides, dilations,
                        out_shape[2:])
    taps = [window_taps(size, out, k, s, d, b)
            for size, out, k, s, d, b in zip(spatial, out_shape[2:], kernel, strides, dilations, pads[:n])]
    grids = np.meshgrid(*[t.reshape(-1) for t in taps], indexing="ij")  # every (window, tap) pair per axis
    valid = np.ones(grids[0].shape, bool)
    for grid, size in zip(grids, spatial):
        valid &= (grid >= 0) & (grid < size)
    flat_spatial = np.ravel_multi_index([np.clip(g, 0, size - 1) for g, size in zip(grids, spatial)], spatial)
    values = x.reshape(*x.shape[:2], -1)[:, :, flat_spatial.reshape(-1)].reshape(*x.shape[:2], *grids[0].shape)
    values = np.where(valid, values, -np.inf)
    # axes per spatial dim are (out_i, k_i) pairs: bring outs first, taps last
    shape = [d for t in taps for d in t.shape]
    values = values.reshape(*x.shape[:2], *shape)
    order = [0, 1] + [2 + 2 * i for i in range(n)] + [3 + 2 * i for i in range(n)]
    values = values.transpose(order).reshape(*x.shape[:2], *out_shape[2:], -1)
    best = values.argmax(axis=-1)
    picked = flat_spatial.reshape(shape).transpose([2 * i for i in range(n)] + [2 * i + 1 for i in range(n)])
    picked = picked.reshape(*out_shape[2:], -1)
    spatial_index = np.take_along_axis(np.broadcast_to(picked, (*x.shape[:2], *picked.shape)), best[..., None], -1)[..., 0]
    channel_offset = (np.arange(x.shape[0])[:, None] * x.shape[1] + np.arange(x.shape[1])[None, :]) * int(np.prod(spatial))
    return (spatial_index + channel_offset.reshape(*x.shape[:2], *([1] * n))).astype(np.int64)


def evaluate(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    """Run `model` in float64 with onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    wide = widened(model)
    feeds = {k: np.asarray(v, np.float64) if np.asarray(v).dtype == np.float32 else v for k, v in feeds.items()}
    return ReferenceEvaluator(wide, new_ops=_exact_ops()).run(outputs, feeds)



