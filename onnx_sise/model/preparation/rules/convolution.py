"""Convolutions and pooling: ConvTranspose and Conv with the layer's own weight,
scatter-add at MaxPool's indices, window divisors read off AveragePool, reductions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnx import helper

from ..emitter import Emitter
from ..geometry import resolve_pads, window_taps
from .base import Step, gate, rule, run_single


def explicit_pads(s: Step, spatial_in: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int], spatial_out: Sequence[int]) -> list[int]:
    return resolve_pads(str(s.attr("auto_pad", "NOTSET")), s.attr("pads", None), spatial_in, kernel, strides,
                        dilations, spatial_out)


def _transposed(s: Step, dy: str, weight: str, x_shape: Sequence[int], y_shape: Sequence[int],
                kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], pads: Sequence[int],
                group: int) -> str:
    """ConvTranspose of dy with the convolution's own weight, shaped like x: the
    convolution's input gradient (or a pooling's, with a weight of window weights)."""
    e = s.e
    n = len(kernel)
    begins, ends, output_padding, extra = list(pads[:n]), list(pads[n:]), [0] * n, [0] * n
    for i in range(n):
        reach = strides[i] * (y_shape[2 + i] - 1) + (kernel[i] - 1) * dilations[i] + 1 - begins[i]
        target = x_shape[2 + i]
        if reach >= target:  # rows past the input (a ceil-mode window, end padding): cut off
            ends[i] = reach - target
        elif target - reach < max(strides[i], dilations[i]):
            ends[i], output_padding[i] = 0, target - reach
        else:  # input rows no window reads: zero gradient there
            ends[i], extra[i] = 0, target - reach
    grad = e.op("ConvTranspose", [dy, weight], strides=list(strides), dilations=list(dilations),
                pads=begins + ends, group=group, output_padding=output_padding)
    if any(extra):
        grad = e.op("Pad", [grad, e.const(np.asarray([0, 0] + [0] * n + [0, 0] + extra, np.int64))])
    return grad


@rule("Conv")
def _conv(s: Step) -> list[str | None]:
    x_shape, y_shape, w_shape = s.shape(s.x()), s.shape(s.y()), s.shape(s.x(1))
    n = len(x_shape) - 2
    kernel = list(s.attr("kernel_shape", w_shape[2:]))
    strides, dilations = list(s.attr("strides", [1] * n)), list(s.attr("dilations", [1] * n))
    pads = explicit_pads(s, x_shape[2:], kernel, strides, dilations, y_shape[2:])
    grads: list[str | None] = [None] * len(s.node.input)
    if s.wants[0]:
        grads[0] = _transposed(s, s.dy[0], s.x(1), x_shape, y_shape, kernel, strides, dilations, pads,
                               int(s.attr("group", 1)))
    if len(s.wants) > 1 and s.wants[1]:
        raise s.refuse("its weights depend on the image")
    return grads


@rule("ConvTranspose")
def _conv_transpose(s: Step) -> list[str | None]:
    """dX = Conv(dY, W) with the same strides, dilations and groups: y[i s + k d - pb]
    gathers x[i] w[k], so x[i] receives sum_k dy[i s + k d - pb] w[k]."""
    e = s.e
    x_shape = s.shape(s.x())
    n = len(x_shape) - 2
    if s.attr("output_shape") is not None or s.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise s.refuse("output_shape and auto_pad are not supported; export with explicit pads")
    if len(s.wants) > 1 and s.wants[1]:
        raise s.refuse("its weights depend on the image")
    strides, dilations = list(s.attr("strides", [1] * n)), list(s.attr("dilations", [1] * n))
    pads = list(s.attr("pads", [0] * (2 * n)))
    extra = list(s.attr("output_padding", [0] * n))
    ends = [max(pads[n + i] - extra[i], 0) for i in range(n)]
    grad = e.op("Conv", [s.dy[0], s.x(1)], strides=strides, dilations=dilations, pads=pads[:n] + ends,
                group=int(s.attr("group", 1)))
    return [grad] + [None] * (len(s.node.input) - 1)


def _window_counts(x_spatial: Sequence[int], y_spatial: Sequence[int], kernel: Sequence[int],
                   strides: Sequence[int], dilations: Sequence[int], begins: Sequence[int]) -> np.ndarray:
    """Number of input elements (not padding) each pooling window covers, (1, 1, *y_spatial)."""
    counts = np.ones((1, 1), np.float64)
    for size, out, k, stride, d, begin in zip(x_spatial, y_spatial, kernel, strides, dilations, begins):
        taps = window_taps(size, out, k, stride, d, begin)
        per_axis = ((taps >= 0) & (taps < size)).sum(axis=1).astype(np.float64)
        counts = counts[..., None] * per_axis
    return counts


@rule("AveragePool")
def _average_pool(s: Step) -> list[str | None]:
    e = s.e
    x_shape, y_shape = s.shape(s.x()), s.shape(s.y())
    n = len(x_shape) - 2
    kernel = list(s.attr("kernel_shape"))
    strides, dilations = list(s.attr("strides", [1] * n)), list(s.attr("dilations", [1] * n))
    pads = explicit_pads(s, x_shape[2:], kernel, strides, dilations, y_shape[2:])
    # Each output is the sum of its window's input elements / a divisor that depends on
    # count_include_pad and ceil_mode; the divisor is read off the op itself on ones.
    covered = _window_counts(x_shape[2:], y_shape[2:], kernel, strides, dilations, pads[:n])
    on_ones = run_single(s.node, {s.x(): np.ones((1, 1, *x_shape[2:]), np.float32)}, s.graph)[0].astype(np.float64)
    weights = np.divide(on_ones, covered, out=np.zeros_like(on_ones), where=covered > 0)
    scaled = s.e.mul(s.dy[0], e.const(weights.astype(s.e.dtype)) if np.ptp(weights) else e.const(float(weights.flat[0])))
    channels = x_shape[1]
    window = e.const(np.ones((channels, 1, *kernel), s.e.dtype))
    return [_transposed(s, scaled, window, x_shape, y_shape, kernel, strides, dilations, pads, channels)]


@rule("MaxPool")
def _max_pool(s: Step) -> list[str | None]:
    e = s.e
    x_shape = s.shape(s.x())
    if int(s.attr("storage_order", 0)) != 0:
        raise s.refuse("storage_order=1 is not supported")
    attrs = {a.name: helper.get_attribute_value(a) for a in s.node.attribute}
    _, indices = e.op_outputs("MaxPool", [s.x()], 2, **attrs)
    return [_scatter_add(e, s.dy[0], indices, x_shape)]


def _scatter_add(e: Emitter, grad: str, flat_indices: str, x_shape: Sequence[int]) -> str:
    size = int(np.prod(x_shape))
    flat = e.op("ScatterElements", [e.zeros([size]), e.reshape(flat_indices, [-1]), e.reshape(grad, [-1])],
                axis=0, reduction="add")
    return e.reshape(flat, x_shape)


@rule("GlobalAveragePool")
def _global_average_pool(s: Step) -> list[str | None]:
    x_shape = s.shape(s.x())
    area = float(np.prod(x_shape[2:]))
    return [s.e.expand(s.e.scale(s.dy[0], 1.0 / area), x_shape)]


@rule("GlobalMaxPool")
def _global_max_pool(s: Step) -> list[str | None]:
    e = s.e
    x_shape = s.shape(s.x())
    return [gate(s, e.op("Equal", [s.x(), s.y()]), e.expand(s.dy[0], x_shape))]


def _reduce_axes(s: Step) -> list[int]:
    rank = len(s.shape(s.x()))
    axes = s.value(1) if len(s.node.input) > 1 and s.x(1) else s.attr("axes", None)
    if axes is None or len(np.asarray(axes).reshape(-1)) == 0:
        if len(s.node.input) > 1 and s.x(1) and s.value(1) is None:
            raise s.refuse("its axes are computed from the image")
        return [] if int(s.attr("noop_with_empty_axes", 0)) else list(range(rank))
    return sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))


@rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2", "ReduceL1",
      "ReduceLogSumExp")
def _reduce(s: Step) -> list[str | None]:
    e, op = s.e, s.node.op_type
    x_shape = s.shape(s.x())
    axes = _reduce_axes(s)
    kept = tuple(1 if i in axes else d for i, d in enumerate(x_shape))
    dy = e.expand(e.reshape(s.dy[0], kept), x_shape)
    if op == "ReduceSum":
        grad = dy
    elif op == "ReduceMean":
        grad = e.scale(dy, 1.0 / float(np.prod([x_shape[a] for a in axes]) if axes else 1.0))
    elif op in ("ReduceMax", "ReduceMin"):
        grad = gate(s, e.op("Equal", [s.x(), e.reshape(s.y(), kept)]), dy)
    elif op == "ReduceSumSquare":
        grad = e.mul(dy, e.scale(s.x(), 2.0))
    elif op == "ReduceL1":
        grad = e.mul(dy, e.op("Sign", [s.x()]))
    elif op == "ReduceL2":
        grad = e.mul(dy, e.div(s.x(), e.reshape(s.y(), kept)))
    else:  # ReduceLogSumExp: softmax over the axes
        grad = e.mul(dy, e.op("Exp", [e.sub(s.x(), e.reshape(s.y(), kept))]))
    return [grad] + [None] * (len(s.node.input) - 1)
