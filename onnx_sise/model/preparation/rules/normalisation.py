"""Normalisations and softmaxes."""

from __future__ import annotations

import numpy as np

from .base import Step, rule


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
    axis = int(s.attr("axis", -1)) % len(s.shape(s.x()))  # graphs are lifted to opset 17: one axis
    weighted = e.reduce_sum(e.mul(s.dy[0], s.y()), [axis])
    return [e.mul(s.y(), e.sub(s.dy[0], weighted))]


@rule("LogSoftmax")
def _log_softmax(s: Step) -> list[str | None]:
    e = s.e
    axis = int(s.attr("axis", -1)) % len(s.shape(s.x()))
    return [e.sub(s.dy[0], e.mul(e.op("Exp", [s.y()]), e.reduce_sum(s.dy[0], [axis])))]
