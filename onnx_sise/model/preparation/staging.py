"""The gradient sub-graph laid out so that a call pays only for what it asks
(docs/design.md section 3, "A call pays for what it asks"): the backward pass runs from
the objective down to the shallowest tap asked for, once per row of class weights, over
one forward pass that runs as fast as the scoring graph's.

onnxruntime runs every node of a graph whatever outputs are asked for, so what a call
does not need must sit behind a switch. Level j is the work that tap j's gradient needs
and no deeper tap's; each level sits in the then-branch of an If on `from_tap <= j`,
nested inside the next deeper level's branch, so from_tap = j runs the backward from the
objective down to tap j and no further (default 0: every tap, as before the switch).

A level holds three things:
- the forward nodes its backward reads, computed again from the taps' activations
  (the forward itself, at the top, then has no tensor that a backward node reads but
  the taps, logits and scores, so onnxruntime fuses and lays it out as it does the
  scoring graph's: a Conv keeps its activation fused, no layout reorder to feed the
  backward);
- the backward nodes that do not depend on the class weights (the masks of the
  activations' derivatives), once;
- a Loop over the rows of the class weights (target_weights and logit_weights, (R,
  classes) each, a 1-row operand broadcast) with the backward nodes that do: row r of
  each tap's gradient, (R, C, H, W), is d(sum_c w_rc Psi_c + sum_c u_rc y_c)/dA.

A level's nodes are found by walking back from each tap's gradient, deepest tap first:
no assumption on how the taps nest, only that the nodes come in topological order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_sise.errors import ExportError

from .static_graph import reads


@dataclass(frozen=True)
class Staged:
    """The nodes after the forward graph, and each tap's gradient (R, C, H, W) among their outputs."""

    nodes: list[onnx.NodeProto]
    gradients: list[str]


def staged_graph(forward: Sequence[onnx.NodeProto], fast: Collection[str], backward: Sequence[onnx.NodeProto],
                 gradients: Sequence[str], shapes: Sequence[tuple[int, ...]], weights: Sequence[str],
                 from_tap: str, prefix: str) -> Staged:
    """The level switches, forward recomputation and row loops of the backward pass.

    Args:
        forward: the forward graph's nodes (run once, at the top), in topological order.
        fast: the forward tensors the backward may read as they are (the taps, logits,
            scores, the inputs); any other forward tensor it reads is computed again.
        backward: the emitted backward nodes, in topological order.
        gradients: each tap's gradient in `backward`, (1, C, H, W), taps from shallow
            to deep, with `shapes` (C, H, W).
        weights: the class-weight inputs, (R, classes) each.
        from_tap: the int64 scalar input: the shallowest tap whose gradient is made.
        prefix: every name made here starts with it."""
    count = len(gradients)
    name = _Names(prefix)
    made_by = {o: i for i, n in enumerate(forward) for o in n.output}
    from_weights = _downstream(forward, set(weights))
    leaked = sorted({i for n in backward for i in reads(n) if i in from_weights})
    if leaked:
        raise ExportError(f"the backward pass reads {leaked[0]!r}, a forward tensor made from the class weights: "
                          "it cannot run once per row of weights")
    level = _levels(backward, gradients)
    per_row, row_outputs = [], set(weights)
    for node in backward:
        per_row.append(bool(reads(node) & row_outputs))
        if per_row[-1]:
            row_outputs.update(o for o in node.output if o)
    flat = [g for g in gradients if g not in row_outputs]
    if flat:
        raise ExportError(f"the gradient {flat[0]!r} does not depend on the class weights")

    again_level: dict[int, int] = {}  # forward node -> the level that computes it again
    for tap in reversed(range(count)):
        stack = [i for n, x in zip(backward, level) if x == tap for i in reads(n)]
        while stack:
            index = made_by.get(stack.pop())
            if index is None or index in again_level or any(o in fast for o in forward[index].output):
                continue
            again_level[index] = tap
            stack.extend(reads(forward[index]))
    again = {o: f"{prefix}again/{o}" for i in again_level for o in forward[i].output if o}

    produced_at = {o: x for n, x in zip(backward, level) for o in n.output}
    exported: dict[int, list[str]] = {tap: [] for tap in range(count)}
    for node, x, row in zip(backward, level, per_row):
        for i in reads(node):
            if row and i in row_outputs and i not in weights and produced_at[i] > x and i not in exported[produced_at[i]]:
                exported[produced_at[i]].append(i)
    for g in gradients:
        if g not in exported[produced_at[g]]:
            exported[produced_at[g]].append(g)

    nodes: list[onnx.NodeProto] = []
    counts = []
    for w in weights:
        shape, rows = name("shape"), name("rows")
        nodes += [helper.make_node("Shape", [w], [shape], name=shape, start=0, end=1),
                  helper.make_node("Squeeze", [shape], [rows], name=rows)]
        counts.append(rows)
    trips = name("trips")
    nodes.append(helper.make_node("Max", counts, [trips], name=trips))
    conditions = []
    for tap in range(count):
        condition = name(f"from_tap_le_{tap}")
        nodes.append(helper.make_node("LessOrEqual", [from_tap, _const(nodes, name, np.array(tap, np.int64))],
                                      [condition], name=condition))
        conditions.append(condition)
    plan = _Plan(forward, backward, level, per_row, again_level, again, exported, weights, dict(zip(weights, counts)),
                 trips, conditions, gradients, shapes, name)
    gate, stacked = plan.level(count - 1, {})
    nodes.append(gate)
    axis = _const(nodes, name, np.array([1], np.int64))
    outputs = [name(f"gradient_{tap}") for tap in range(count)]
    nodes += [helper.make_node("Squeeze", [stacked[tap], axis], [o], name=o) for tap, o in enumerate(outputs)]
    return Staged(nodes, outputs)


def _levels(backward: Sequence[onnx.NodeProto], gradients: Sequence[str]) -> list[int]:
    """For each backward node, the deepest tap whose gradient needs it."""
    producer = {o: i for i, n in enumerate(backward) for o in n.output}
    unset = len(gradients)
    level = [unset] * len(backward)
    for tap in reversed(range(len(gradients))):
        stack = [gradients[tap]]
        while stack:
            index = producer.get(stack.pop())
            if index is None or level[index] != unset:
                continue  # not a backward node, or one a deeper tap's gradient needs already
            level[index] = tap
            stack.extend(reads(backward[index]))
    if unset in level:
        raise ExportError("the backward pass has nodes no tap's gradient needs")
    return level


@dataclass
class _Plan:
    forward: Sequence[onnx.NodeProto]
    backward: Sequence[onnx.NodeProto]
    level_of: list[int]
    per_row: list[bool]
    again_level: dict[int, int]
    again: dict[str, str]
    exported: dict[int, list[str]]
    weights: Sequence[str]
    counts: dict[str, str]
    trips: str
    conditions: list[str]
    gradients: Sequence[str]
    shapes: Sequence[tuple[int, ...]]
    name: _Names

    def level(self, tap: int, stacked: dict[str, str]) -> tuple[onnx.NodeProto, dict[int, str]]:
        """The If of level `tap` and the names of its outputs, the gradients (R, 1, C, H, W)
        of taps `tap`, `tap` - 1, ..., 0 (empty (0, 1, C, H, W) where it is off);
        `stacked`: the stacked (R, ...) names of the deeper levels' per-row tensors."""
        name = self.name
        nodes = [_renamed(n, self.again, f"{name.prefix}again/{i}/{n.name}") for i, n in enumerate(self.forward)
                 if self.again_level.get(i) == tap]
        nodes += [_renamed(n, self.again) for n, x, row in zip(self.backward, self.level_of, self.per_row)
                  if x == tap and not row]
        rows = [n for n, x, row in zip(self.backward, self.level_of, self.per_row) if x == tap and row]
        stacked = dict(stacked)
        if rows:
            nodes.append(self._loop(tap, rows, stacked))
        outputs = {tap: name(f"level_gradient_{tap}")}
        nodes.append(helper.make_node("Identity", [stacked[self.gradients[tap]]], [outputs[tap]], name=outputs[tap]))
        if tap > 0:
            inner, inner_outputs = self.level(tap - 1, stacked)
            nodes.append(inner)
            outputs.update(inner_outputs)
        taps = sorted(outputs, reverse=True)
        then_branch = helper.make_graph(nodes, f"level_{tap}", [], [
            helper.make_tensor_value_info(outputs[t], TensorProto.FLOAT, [None] * 5) for t in taps])
        empty = {t: name(f"skipped_{t}") for t in taps}
        else_branch = helper.make_graph([
            helper.make_node("Constant", [], [empty[t]], name=empty[t],
                             value=numpy_helper.from_array(np.zeros((0, 1, *self.shapes[t]), np.float32)))
            for t in taps], f"level_{tap}_off", [], [
            helper.make_tensor_value_info(empty[t], TensorProto.FLOAT, [None] * 5) for t in taps])
        results = {t: name(f"gradient_at_{t}") for t in taps}
        gate = helper.make_node("If", [self.conditions[tap]], [results[t] for t in taps], name=name(f"level_{tap}"),
                                then_branch=then_branch, else_branch=else_branch)
        return gate, results

    def _loop(self, tap: int, rows: list[onnx.NodeProto], stacked: dict[str, str]) -> onnx.NodeProto:
        """The Loop over the rows of class weights of level `tap`'s per-row nodes; adds the
        stacked names of what it exports to `stacked`."""
        name = self.name
        row, condition_in, condition_out = name("row"), name("condition_in"), name("condition_out")
        body: list[onnx.NodeProto] = []
        local: dict[str, str] = {}
        made_here = {o for n in rows for o in n.output}
        for i in dict.fromkeys(i for n in rows for i in reads(n)):
            if i in self.weights:
                index, local[i] = name("row_index"), name("row_weights")
                body += [helper.make_node("Mod", [row, self.counts[i]], [index + "_mod"], name=index + "_mod"),
                         helper.make_node("Unsqueeze", [index + "_mod", _const(body, name, np.array([0], np.int64))],
                                          [index], name=index),
                         helper.make_node("Gather", [i, index], [local[i]], name=local[i], axis=0)]
            elif i in stacked and i not in made_here:
                local[i] = name("row_of")
                body.append(helper.make_node("Gather", [stacked[i], row], [local[i]], name=local[i], axis=0))
        body += [_renamed(n, {**self.again, **local}) for n in rows]
        body.append(helper.make_node("Identity", [condition_in], [condition_out], name=condition_out))
        scan = [name("row_out") for _ in self.exported[tap]]
        body += [helper.make_node("Identity", [t], [s], name=s) for t, s in zip(self.exported[tap], scan)]
        graph = helper.make_graph(body, f"rows_{tap}", [
            helper.make_tensor_value_info(row, TensorProto.INT64, []),
            helper.make_tensor_value_info(condition_in, TensorProto.BOOL, [])], [
            helper.make_tensor_value_info(condition_out, TensorProto.BOOL, []),
            *[helper.make_tensor_value_info(s, TensorProto.FLOAT, None) for s in scan]])
        out = [name("stacked") for _ in self.exported[tap]]
        stacked.update(zip(self.exported[tap], out))
        return helper.make_node("Loop", [self.trips, ""], out, name=name(f"rows_{tap}"), body=graph)


class _Names:
    def __init__(self, prefix: str) -> None:
        self.prefix, self.count = prefix, 0

    def __call__(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"


def _downstream(nodes: Sequence[onnx.NodeProto], sources: set[str]) -> set[str]:
    found = set(sources)
    for node in nodes:
        if reads(node) & found:
            found.update(o for o in node.output if o)
    return found - sources


def _renamed(node: onnx.NodeProto, mapping: dict[str, str], node_name: str | None = None) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = node.name if node_name is None else node_name
    copy.input[:] = [mapping.get(i, i) for i in copy.input]
    copy.output[:] = [mapping.get(o, o) for o in copy.output]
    return copy


def _const(nodes: list[onnx.NodeProto], name: _Names, value: np.ndarray) -> str:
    out = name("const")
    nodes.append(helper.make_node("Constant", [], [out], name=out, value=numpy_helper.from_array(value)))
    return out
