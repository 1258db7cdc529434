"""Writes the nodes and constants of a gradient graph, with fresh names under one prefix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Emitter:
    """Appends nodes to `nodes` and constants to `constants`; every name it makes starts
    with `prefix`, so nothing it writes collides with the forward graph."""

    def __init__(self, prefix: str, dtype: type = np.float32) -> None:
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.constants: dict[str, np.ndarray] = {}
        self._count = 0
        self._small: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: np.ndarray | float | Sequence[int], dtype: np.dtype | type | None = None,
              hint: str = "const") -> str:
        """A constant tensor (floats default to the graph's float type; small ones shared)."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(self.dtype)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 16 else None
        if key is not None and key in self._small:
            return self._small[key]
        name = self.fresh(hint)
        self.constants[name] = np.ascontiguousarray(array)
        if key is not None:
            self._small[key] = name
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: object) -> str:
        """One node with one output; returns the output's name."""
        return self.op_outputs(op_type, inputs, 1, hint, **attrs)[0]

    def op_outputs(self, op_type: str, inputs: Sequence[str], count: int, hint: str | None = None,
                   **attrs: object) -> list[str]:
        """One node with `count` outputs."""
        names = [self.fresh(hint or op_type.lower()) for _ in range(count)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names

    # Shorthands used by most rules.
    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", [a, b])

    def div(self, a: str, b: str) -> str:
        return self.op("Div", [a, b])

    def scale(self, a: str, factor: float) -> str:
        return self.mul(a, self.const(factor))

    def where(self, condition: str, a: str, b: str) -> str:
        return self.op("Where", [condition, a, b])

    def reshape(self, a: str, shape: Sequence[int]) -> str:
        return self.op("Reshape", [a, self.const(np.asarray(shape, np.int64))])

    def zeros(self, shape: Sequence[int], dtype: np.dtype | None = None) -> str:
        """Zeros made at run time (ConstantOfShape), not stored in the file."""
        value = numpy_helper.from_array(np.zeros(1, dtype or self.dtype))
        return self.op("ConstantOfShape", [self.const(np.asarray(shape, np.int64))], value=value)

    def reduce_sum(self, a: str, axes: Sequence[int], keepdims: bool = True) -> str:
        return self.op("ReduceSum", [a, self.const(np.asarray(axes, np.int64))], keepdims=int(keepdims))

    def expand(self, a: str, shape: Sequence[int]) -> str:
        return self.op("Expand", [a, self.const(np.asarray(shape, np.int64))])
