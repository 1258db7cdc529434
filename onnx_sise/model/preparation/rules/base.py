"""What every gradient rule shares: the node being differentiated (Step), the table
of rules (RULES, filled by the @rule decorator of each rule module) and the helpers
several families use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnx_sise.errors import ExportError

from ..emitter import Emitter
from ..static_graph import StaticGraph


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


def gate(s: Step, condition: str, inside: str, outside: str | None = None) -> str:
    return s.e.where(condition, inside, outside if outside is not None else s.e.const(0.0))


def run_single(node: onnx.NodeProto, feeds: dict[str, np.ndarray], graph: StaticGraph) -> list[np.ndarray]:
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
