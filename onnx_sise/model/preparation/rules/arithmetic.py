"""Broadcasting arithmetic and matrix products: the elementwise gradient summed over the
broadcast axes; MatMul and Gemm with the other operand transposed."""

from __future__ import annotations

import numpy as np

from ..emitter import Emitter
from .base import Step, gate, rule, unbroadcast


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
        grads.append(unbroadcast(e, gate(s, chosen, s.dy[0]), s.shape(s.y()), s.shape(x)))
    return grads


@rule("Where")
def _where(s: Step) -> list[str | None]:
    e = s.e
    out = s.shape(s.y())
    grads: list[str | None] = [None, None, None]
    if s.wants[1]:
        grads[1] = unbroadcast(e, gate(s, s.x(0), s.dy[0]), out, s.shape(s.x(1)))
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
