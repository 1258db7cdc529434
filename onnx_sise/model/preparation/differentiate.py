"""Reverse-mode differentiation of a static ONNX graph (docs/design.md section 4, step 5):
the gradient of one scalar objective with respect to chosen tensors (the taps), as
ONNX nodes appended to the forward graph. Only tensors on a path from a chosen tensor
to the objective get a gradient; a tensor read by several nodes gets the Sum of their
contributions; integer and boolean tensors get none; weights get none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnx_sise.errors import ExportError

from .emitter import Emitter
from .rules import RULES, Step
from .static_graph import StaticGraph


def _active(graph: StaticGraph, objective: str, wrt: Sequence[str]) -> set[str]:
    """Float tensors downstream of some `wrt` tensor and upstream of the objective."""
    downstream = set(wrt)
    for node in graph.nodes:
        if any(i in downstream for i in node.input):
            downstream.update(o for o in node.output if o and graph.is_float(o))
    upstream = {objective}
    for node in reversed(graph.nodes):
        if any(o in upstream for o in node.output):
            upstream.update(i for i in node.input if i)
    return downstream & upstream


def differentiate(graph: StaticGraph, objective: str, wrt: Sequence[str], emitter: Emitter) -> list[str]:
    """Names of d objective / d t for each t in `wrt`, written by `emitter`.

    Raises ExportError naming the op type and node of the first op on the data path
    that has no rule (never skips one)."""
    if graph.shapes.get(objective, ()) not in ((), (1,)):
        raise ExportError(f"the objective {objective!r} is not a scalar: shape {graph.shapes.get(objective)}")
    active = _active(graph, objective, wrt)
    missing = [t for t in wrt if t not in active]
    if missing:
        raise ExportError(f"the objective does not depend on {', '.join(missing)}")
    contributions: dict[str, list[str]] = {objective: [emitter.const(np.ones(graph.shapes[objective]))]}
    for node in reversed(graph.nodes):
        if not any(o in contributions for o in node.output):
            continue
        wants = [bool(i) and i in active and i not in graph.constants for i in node.input]
        if not any(wants):
            continue
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            raise ExportError(f"op {node.op_type}{' (domain ' + node.domain + ')' if node.domain else ''} "
                              f"(node {node.name!r}) has no gradient rule: see the README's table of supported ops")
        dy = [_total(emitter, contributions.get(o, [])) for o in node.output]
        grads = rule(Step(node, graph, emitter, dy, wants))
        for name, want, grad in zip(node.input, wants, grads):
            if want and grad is not None:
                contributions.setdefault(name, []).append(grad)
    return [_total(emitter, contributions.get(t, [])) or emitter.zeros(graph.shapes[t]) for t in wrt]


def _total(emitter: Emitter, parts: list[str]) -> str | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    total = emitter.op("Sum", parts)
    parts[:] = [total]
    return total


@dataclass
class GradientGraph:
    """The batch-1 forward graph with the objective, and the gradient sub-model built on it."""

    forward: StaticGraph
    model: onnx.ModelProto
    raw_gradients: list[str]
    emitter: Emitter
