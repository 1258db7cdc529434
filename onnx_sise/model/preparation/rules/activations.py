"""Elementwise activations and unary functions: dX = dY * f'(X), written with Where and Mul."""

from __future__ import annotations

import math

import numpy as np

from .base import Step, gate, rule, unbroadcast


@rule("Relu")
def _relu(s: Step) -> list[str | None]:
    e = s.e
    return [gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0])]


@rule("LeakyRelu")
def _leaky_relu(s: Step) -> list[str | None]:
    e = s.e
    return [gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0], e.scale(s.dy[0], float(s.attr("alpha", 0.01))))]


@rule("PRelu")
def _prelu(s: Step) -> list[str | None]:
    e = s.e
    return [gate(s, e.op("Greater", [s.x(), e.const(0.0)]), s.dy[0], e.mul(s.dy[0], s.x(1))), None]


@rule("ThresholdedRelu")
def _thresholded_relu(s: Step) -> list[str | None]:
    e = s.e
    return [gate(s, e.op("Greater", [s.x(), e.const(float(s.attr("alpha", 1.0)))]), s.dy[0])]


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
    if low is not None:
        conditions.append(e.op("Greater", [s.x(), low]))
    if high is not None:
        conditions.append(e.op("Less", [s.x(), high]))
    if not conditions:
        return [s.dy[0]]
    condition = conditions[0] if len(conditions) == 1 else e.op("And", conditions)
    return [gate(s, condition, s.dy[0])] + [None] * (len(s.node.input) - 1)


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
    return [gate(s, inside, e.scale(s.dy[0], alpha))]


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
