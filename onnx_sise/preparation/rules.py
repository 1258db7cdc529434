"""Vector-Jacobian products of the ONNX ops CNN classifiers use, written as ONNX ops
(DESIGN.md section 3, step 3). Each rule gets the gradient of a node's outputs and
returns the gradient of each input that needs one (None for the rest). Shapes are
static (static_graph.py), so pads, counts, index maps and broadcast axes are NumPy
constants computed here. No weight gradients: only the data path is differentiated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnx_sise.errors import ExportError

from .emitter import Emitter
from .geometry import resolve_pads, window_taps
from .static_graph import StaticGraph


@dataclass
class Step:
    """One node being differentiated: its gradients in (`dy`, one per output, None where
    no gradient reaches it) and which inputs want one (`wants`)."""

    node: onnx.NodeProto
    graph: StaticGraph
    e: Emitter
    dy: list[str | None]
    wants: list[bool]

    def x(self, i: int = 0) -> str:
        return self.node.input[i] if i < len(self.node.input) else ""

    def y(self, i: int = 0) -> str:
        return self.node.output[i]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shapes[name]

    def value(self, i: int) -> np.ndarray | None:
        return self.graph.constant(self.x(i))

    def attr(self, key: str, default: object = None) -> object:
        for a in self.node.attribute:
            if a.name == key:
                value = helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def refuse(self, why: str) -> ExportError:
        return ExportError(f"op {self.node.op_type} (node {self.node.name!r}) cannot be differentiated: {why}")


Rule = Callable[[Step], list[str | None]]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = fn
        return fn

    return register


def unbroadcast(e: Emitter, grad: str, from_shape: Sequence[int], to_shape: Sequence[int]) -> str:
    """Sum `grad` (of the broadcast shape) back to an operand's shape."""
    from_shape, to_shape = tuple(from_shape), tuple(to_shape)
    if from_shape == to_shape:
        return grad
    lead = len(from_shape) - len(to_shape)
    padded = (1,) * lead + to_shape
    axes = [i for i, (f, t) in enumerate(zip(from_shape, padded)) if i < lead or (t == 1 and f != 1)]
    summed = e.reduce_sum(grad, axes, keepdims=True) if axes else grad
    return e.reshape(summed, to_shape)


# ---- elementwise activations ------------------------------------------------------------

def _gate(s: Step, condition: str, inside: str, outside: str | None = None) -> str:
    return s.e.where(condition, inside, outside if outside is not None else s.e.const(0.0))


@rule("Relu")
def _relu(s: Step) -> list[str | None]:
    e = s.e
    return [_gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0])]


@rule("LeakyRelu")
def _leaky_relu(s: Step) -> list[str | None]:
    e = s.e
    return [_gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0], e.scale(s.dy[0], float(s.attr("alpha", 0.01))))]


@rule("PRelu")
def _prelu(s: Step) -> list[str | None]:
    e = s.e
    return [_gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0], e.mul(s.dy[0], s.x(1))), None]


@rule("ThresholdedRelu")
def _thresholded_relu(s: Step) -> list[str | None]:
    e = s.e
    return [_gate(s, e.op("Greater", [s.x(), e.const(float(s.attr("alpha", 1.0)))]), s.dy[0])]


@rule("Elu", "Selu", "Celu")
def _elu_family(s: Step) -> list[str | None]:
    e = s.e
    op = s.node.op_type
    alpha = float(s.attr("alpha", {"Elu": 1.0, "Celu": 1.0, "Selu": 1.67326319217681884765625}[op]))
    gamma = float(s.attr("gamma", 1.05070102214813232421875)) if op == "Selu" else 1.0
    # Below zero: Elu y' = y + alpha; Selu y' = y + alpha * gamma; Celu y' = y / alpha + 1.
    if op == "Celu":
        below = e.add(e.scale(s.y(), 1.0 / alpha), e.const(1.0))
    else:
        below = e.add(s.y(), e.const(alpha * gamma))
    positive = e.op("Greater", [s.x(), e.const(0.0)])
    return [e.mul(s.dy[0], e.where(positive, e.const(gamma), below))]


@rule("Clip")
def _clip(s: Step) -> list[str | None]:
    e = s.e
    conditions = []
    low = s.x(1) if len(s.node.input) > 1 and s.x(1) else None
    high = s.x(2) if len(s.node.input) > 2 and s.x(2) else None
    if s.graph.opset < 11:  # attributes before opset 11 (graphs are lifted past it, kept for clarity)
        low, high = e.const(float(s.attr("min", -np.inf))), e.const(float(s.attr("max", np.inf)))
    if low is not None:
        conditions.append(e.op("Greater", [s.x(), low]))
    if high is not None:
        conditions.append(e.op("Less", [s.x(), high]))
    if not conditions:
        return [s.dy[0]]
    condition = conditions[0] if len(conditions) == 1 else e.op("And", conditions)
    return [_gate(s, condition, s.dy[0])] + [None] * (len(s.node.input) - 1)


@rule("Sigmoid")
def _sigmoid(s: Step) -> list[str | None]:
    e = s.e
    return [e.mul(s.dy[0], e.mul(s.y(), e.sub(e.const(1.0), s.y())))]


@rule("HardSigmoid")
def _hard_sigmoid(s: Step) -> list[str | None]:
    e = s.e
    alpha, beta = float(s.attr("alpha", 0.2)), float(s.attr("beta", 0.5))
    z = e.add(e.scale(s.x(), alpha), e.const(beta))
    inside = e.op("And", [e.op("Greater", [z, e.const(0.0)]), e.op("Less", [z, e.const(1.0)])])
    return [_gate(s, inside, e.scale(s.dy[0], alpha))]


@rule("HardSwish")
def _hard_swish(s: Step) -> list[str | None]:
    e = s.e  # y = x * clip(x / 6 + 1/2, 0, 1): 0 below -3, 1 above 3, x / 3 + 1/2 between
    middle = e.mul(s.dy[0], e.add(e.scale(s.x(), 1.0 / 3.0), e.const(0.5)))
    upper = e.where(e.op("Greater", [s.x(), e.const(3.0)]), s.dy[0], middle)
    return [e.where(e.op("Less", [s.x(), e.const(-3.0)]), e.const(0.0), upper)]


@rule("Tanh")
def _tanh(s: Step) -> list[str | None]:
    e = s.e
    return [e.mul(s.dy[0], e.sub(e.const(1.0), e.mul(s.y(), s.y())))]


@rule("Softplus")
def _softplus(s: Step) -> list[str | None]:
    return [s.e.mul(s.dy[0], s.e.op("Sigmoid", [s.x()]))]


@rule("Softsign")
def _softsign(s: Step) -> list[str | None]:
    e = s.e
    denominator = e.add(e.const(1.0), e.op("Abs", [s.x()]))
    return [e.div(s.dy[0], e.mul(denominator, denominator))]


@rule("Erf")
def _erf(s: Step) -> list[str | None]:
    e = s.e
    return [e.mul(s.dy[0], e.scale(e.op("Exp", [e.op("Neg", [e.mul(s.x(), s.x())])]), 2.0 / math.sqrt(math.pi)))]


@rule("Gelu")
def _gelu(s: Step) -> list[str | None]:
    e = s.e
    x = s.x()
    if s.attr("approximate", "none") == "tanh":
        c = math.sqrt(2.0 / math.pi)
        x2 = e.mul(x, x)
        u = e.scale(e.mul(x, e.add(e.const(1.0), e.scale(x2, 0.044715))), c)
        t = e.op("Tanh", [u])
        du = e.scale(e.add(e.const(1.0), e.scale(x2, 3 * 0.044715)), c)
        first = e.scale(e.add(e.const(1.0), t), 0.5)
        second = e.mul(e.scale(x, 0.5), e.mul(e.sub(e.const(1.0), e.mul(t, t)), du))
        return [e.mul(s.dy[0], e.add(first, second))]
    cdf = e.scale(e.add(e.const(1.0), e.op("Erf", [e.scale(x, 1.0 / math.sqrt(2.0))])), 0.5)
    pdf = e.scale(e.op("Exp", [e.scale(e.mul(x, x), -0.5)]), 1.0 / math.sqrt(2.0 * math.pi))
    return [e.mul(s.dy[0], e.add(cdf, e.mul(x, pdf)))]


@rule("Mish")
def _mish(s: Step) -> list[str | None]:
    e = s.e
    t = e.op("Tanh", [e.op("Softplus", [s.x()])])
    slope = e.mul(e.mul(s.x(), e.sub(e.const(1.0), e.mul(t, t))), e.op("Sigmoid", [s.x()]))
    return [e.mul(s.dy[0], e.add(t, slope))]


@rule("Exp")
def _exp(s: Step) -> list[str | None]:
    return [s.e.mul(s.dy[0], s.y())]


@rule("Log")
def _log(s: Step) -> list[str | None]:
    return [s.e.div(s.dy[0], s.x())]


@rule("Sqrt")
def _sqrt(s: Step) -> list[str | None]:
    return [s.e.div(s.e.scale(s.dy[0], 0.5), s.y())]


@rule("Reciprocal")
def _reciprocal(s: Step) -> list[str | None]:
    e = s.e
    return [e.op("Neg", [e.mul(s.dy[0], e.mul(s.y(), s.y()))])]


@rule("Neg")
def _neg(s: Step) -> list[str | None]:
    return [s.e.op("Neg", [s.dy[0]])]


@rule("Abs")
def _abs(s: Step) -> list[str | None]:
    return [s.e.mul(s.dy[0], s.e.op("Sign", [s.x()]))]


@rule("Sign", "Floor", "Ceil", "Round")
def _piecewise_constant(s: Step) -> list[str | None]:
    return [None]


@rule("Pow")
def _pow(s: Step) -> list[str | None]:
    e = s.e
    exponent = s.value(1)
    if exponent is None:
        raise s.refuse("the exponent is not a constant")
    if s.wants[1:] and s.wants[1]:
        raise s.refuse("the exponent depends on the image")
    p = float(np.asarray(exponent).reshape(-1)[0]) if np.asarray(exponent).size == 1 else None
    if p is None:
        raise s.refuse("the exponent is not a scalar")
    slope = e.scale(e.op("Pow", [s.x(), e.const(p - 1.0)]), p) if p != 2.0 else e.scale(s.x(), 2.0)
    return [unbroadcast(e, e.mul(s.dy[0], slope), s.shape(s.y()), s.shape(s.x())), None]


# ---- broadcasting arithmetic --------------------------------------------------------------

@rule("Add", "Sub", "Mul", "Div")
def _arithmetic(s: Step) -> list[str | None]:
    e, op, dy = s.e, s.node.op_type, s.dy[0]
    a, b = s.x(0), s.x(1)
    out = s.shape(s.y())
    grads: list[str | None] = [None, None]
    if s.wants[0]:
        da = {"Add": dy, "Sub": dy, "Mul": e.mul(dy, b) if op == "Mul" else None,
              "Div": e.div(dy, b) if op == "Div" else None}[op]
        grads[0] = unbroadcast(e, da, out, s.shape(a))
    if s.wants[1]:
        if op == "Add":
            db = dy
        elif op == "Sub":
            db = e.op("Neg", [dy])
        elif op == "Mul":
            db = e.mul(dy, a)
        else:  # d(a / b) / db = -y / b
            db = e.op("Neg", [e.div(e.mul(dy, s.y()), b)])
        grads[1] = unbroadcast(e, db, out, s.shape(b))
    return grads


@rule("Sum", "Mean")
def _variadic_sum(s: Step) -> list[str | None]:
    e = s.e
    dy = s.dy[0] if s.node.op_type == "Sum" else e.scale(s.dy[0], 1.0 / len(s.node.input))
    return [unbroadcast(e, dy, s.shape(s.y()), s.shape(x)) if want else None for x, want in zip(s.node.input, s.wants)]


@rule("Max", "Min")
def _variadic_extreme(s: Step) -> list[str | None]:
    e = s.e
    grads: list[str | None] = []
    for x, want in zip(s.node.input, s.wants):
        if not want:
            grads.append(None)
            continue
        chosen = e.op("Equal", [x, s.y()])
        grads.append(unbroadcast(e, _gate(s, chosen, s.dy[0]), s.shape(s.y()), s.shape(x)))
    return grads


@rule("Where")
def _where(s: Step) -> list[str | None]:
    e = s.e
    out = s.shape(s.y())
    grads: list[str | None] = [None, None, None]
    if s.wants[1]:
        grads[1] = unbroadcast(e, _gate(s, s.x(0), s.dy[0]), out, s.shape(s.x(1)))
    if s.wants[2]:
        grads[2] = unbroadcast(e, e.where(s.x(0), e.const(0.0), s.dy[0]), out, s.shape(s.x(2)))
    return grads


# ---- matrix products ------------------------------------------------------------------------

def _swap_last(e: Emitter, s: Step, name: str) -> str:
    value = s.graph.constant(name)
    rank = len(s.shape(name))
    if value is not None:
        return e.const(np.swapaxes(value, -1, -2))
    return e.op("Transpose", [name], perm=[*range(rank - 2), rank - 1, rank - 2])


@rule("MatMul")
def _matmul(s: Step) -> list[str | None]:
    e, dy = s.e, s.dy[0]
    a, b = s.x(0), s.x(1)
    if len(s.shape(a)) < 2 or len(s.shape(b)) < 2:
        raise s.refuse("one-dimensional MatMul operands are not supported")
    out = s.shape(s.y())
    grads: list[str | None] = [None, None]
    if s.wants[0]:
        grads[0] = unbroadcast(e, e.op("MatMul", [dy, _swap_last(e, s, b)]), out[:-2] + s.shape(a)[-2:], s.shape(a))
        grads[0] = _unbroadcast_batch(e, grads[0], out, s.shape(a))
    if s.wants[1]:
        grads[1] = _unbroadcast_batch(e, e.op("MatMul", [_swap_last(e, s, a), dy]), out, s.shape(b))
    return grads


def _unbroadcast_batch(e: Emitter, grad: str, out: tuple[int, ...], operand: tuple[int, ...]) -> str:
    """A MatMul operand's gradient, of shape out[:-2] + operand[-2:], summed to the operand's shape."""
    return unbroadcast(e, grad, out[:-2] + operand[-2:], operand)


@rule("Gemm")
def _gemm(s: Step) -> list[str | None]:
    e, dy = s.e, s.dy[0]
    alpha, beta = float(s.attr("alpha", 1.0)), float(s.attr("beta", 1.0))
    trans_a, trans_b = int(s.attr("transA", 0)), int(s.attr("transB", 0))
    grads: list[str | None] = [None] * len(s.node.input)
    if s.wants[0]:  # Y = alpha A' B' + beta C: dA' = alpha dY B'^T
        if trans_a:
            grads[0] = e.op("Gemm", [s.x(1), dy], alpha=alpha, transA=trans_b, transB=1)
        else:
            grads[0] = e.op("Gemm", [dy, s.x(1)], alpha=alpha, transB=1 - trans_b)
    if s.wants[1]:
        if trans_b:
            grads[1] = e.op("Gemm", [dy, s.x(0)], alpha=alpha, transA=1, transB=trans_a)
        else:
            grads[1] = e.op("Gemm", [s.x(0), dy], alpha=alpha, transA=1 - trans_a)
    if len(s.node.input) > 2 and s.x(2) and s.wants[2]:
        grads[2] = unbroadcast(e, e.scale(dy, beta), s.shape(s.y()), s.shape(s.x(2)))
    return grads


# ---- convolution and pooling ------------------------------------------------------------

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
    on_ones = _run_single(s.node, {s.x(): np.ones((1, 1, *x_shape[2:]), np.float32)}, s.graph)[0].astype(np.float64)
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
    return [_gate(s, e.op("Equal", [s.x(), s.y()]), e.expand(s.dy[0], x_shape))]


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
        grad = _gate(s, e.op("Equal", [s.x(), e.reshape(s.y(), kept)]), dy)
    elif op == "ReduceSumSquare":
        grad = e.mul(dy, e.scale(s.x(), 2.0))
    elif op == "ReduceL1":
        grad = e.mul(dy, e.op("Sign", [s.x()]))
    elif op == "ReduceL2":
        grad = e.mul(dy, e.div(s.x(), e.reshape(s.y(), kept)))
    else:  # ReduceLogSumExp: softmax over the axes
        grad = e.mul(dy, e.op("Exp", [e.sub(s.x(), e.reshape(s.y(), kept))]))
    return [grad] + [None] * (len(s.node.input) - 1)


# ---- normalisation ------------------------------------------------------------------------

def _channel_shape(rank: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (rank - 2)


@rule("BatchNormalization")
def _batch_norm(s: Step) -> list[str | None]:
    e = s.e
    if int(s.attr("training_mode", 0)) or len([o for o in s.node.output if o]) > 1:
        raise s.refuse("training mode (batch statistics) is not an inference graph")
    x_shape = s.shape(s.x())
    scale, var = s.value(1), s.value(4)
    epsilon = float(s.attr("epsilon", 1e-5))
    shape = _channel_shape(len(x_shape), x_shape[1])
    if scale is not None and var is not None:
        factor = e.const((scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + epsilon)).reshape(shape))
    else:
        factor = e.reshape(e.div(s.x(1), e.op("Sqrt", [e.add(s.x(4), e.const(epsilon))])), shape)
    return [e.mul(s.dy[0], factor), None, None, None, None]


def _normalised_backward(s: Step, x: str, g: str, axes: list[int], count: int, epsilon: float) -> str:
    """d/dx of (x - mean) / sqrt(var + eps) over `axes`, applied to g:
    (g - mean(g) - xhat * mean(g * xhat)) / sigma."""
    e = s.e
    mean = e.scale(e.reduce_sum(x, axes), 1.0 / count)
    centred = e.sub(x, mean)
    sigma = e.op("Sqrt", [e.add(e.scale(e.reduce_sum(e.mul(centred, centred), axes), 1.0 / count), e.const(epsilon))])
    xhat = e.div(centred, sigma)
    g_mean = e.scale(e.reduce_sum(g, axes), 1.0 / count)
    gx_mean = e.scale(e.reduce_sum(e.mul(g, xhat), axes), 1.0 / count)
    return e.div(e.sub(e.sub(g, g_mean), e.mul(xhat, gx_mean)), sigma)


@rule("InstanceNormalization")
def _instance_norm(s: Step) -> list[str | None]:
    e = s.e
    x_shape = s.shape(s.x())
    axes = list(range(2, len(x_shape)))
    g = e.mul(s.dy[0], e.reshape(s.x(1), _channel_shape(len(x_shape), x_shape[1])))
    count = int(np.prod(x_shape[2:]))
    return [_normalised_backward(s, s.x(), g, axes, count, float(s.attr("epsilon", 1e-5))), None, None]


@rule("LayerNormalization")
def _layer_norm(s: Step) -> list[str | None]:
    e = s.e
    if any(o for o in s.node.output[1:]):
        raise s.refuse("its mean and inverse deviation outputs are used")
    x_shape = s.shape(s.x())
    axis = int(s.attr("axis", -1)) % len(x_shape)
    axes = list(range(axis, len(x_shape)))
    g = e.mul(s.dy[0], s.x(1))
    count = int(np.prod(x_shape[axis:]))
    return [_normalised_backward(s, s.x(), g, axes, count, float(s.attr("epsilon", 1e-5)))] + \
        [None] * (len(s.node.input) - 1)


@rule("Softmax")
def _softmax(s: Step) -> list[str | None]:
    e = s.e
    axis = int(s.attr("axis", -1 if s.graph.opset >= 13 else 1)) % len(s.shape(s.x()))
    if s.graph.opset < 13 and axis != len(s.shape(s.x())) - 1:
        raise s.refuse("a pre-opset-13 Softmax over several axes is not supported")
    weighted = e.reduce_sum(e.mul(s.dy[0], s.y()), [axis])
    return [e.mul(s.y(), e.sub(s.dy[0], weighted))]


@rule("LogSoftmax")
def _log_softmax(s: Step) -> list[str | None]:
    e = s.e
    axis = int(s.attr("axis", -1 if s.graph.opset >= 13 else 1)) % len(s.shape(s.x()))
    if s.graph.opset < 13 and axis != len(s.shape(s.x())) - 1:
        raise s.refuse("a pre-opset-13 LogSoftmax over several axes is not supported")
    return [e.sub(s.dy[0], e.mul(e.op("Exp", [s.y()]), e.reduce_sum(s.dy[0], [axis])))]


# ---- shape and data movement ----------------------------------------------------------------

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


def _run_single(node: onnx.NodeProto, feeds: dict[str, np.ndarray], graph: StaticGraph) -> list[np.ndarray]:
    """`node` evaluated by onnx's reference evaluator with these inputs (the rest from the
    graph's constants)."""
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    values = {i: feeds[i] if i in feeds else graph.constants[i] for i in inputs}
    value_infos = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v))
                   for i, v in values.items()]
    single = helper.make_graph([node], "single", value_infos,
                               [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    model = helper.make_model(single, opset_imports=[helper.make_opsetid("", graph.opset)])
    return ReferenceEvaluator(model).run(None, values)


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
    source = np.rint(np.asarray(_run_single(s.node, feeds, s.graph)[0], np.float64)).astype(np.int64).reshape(-1)
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
            out = np.asarray(_run_single(s.node, {s.x(): probe}, s.graph)[0], np.float64)
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
