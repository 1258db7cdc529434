"""A classifier graph with every shape fixed: the form the gradient rules work on
(docs/design.md section 4, step 2).

The graph's inputs get concrete shapes, one onnxruntime run with every intermediate as
an extra output records each tensor's shape, type and (for constants) value, and every
node whose inputs are all constant, or that reads only a shape (Shape, Size), is folded
into an initializer. What is left is the data path from the inputs to the outputs with
static shapes, so each rule can compute its constants (indices, counts, pads) in NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx.inliner
import onnx.shape_inference
import onnx.version_converter
import onnxruntime as ort
from onnx import helper, numpy_helper

from onnx_sise.errors import ExportError

SHAPE_READERS = ("Shape", "Size")
NONDETERMINISTIC = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")
FLOAT_TYPES = (np.float16, np.float32, np.float64)
MIN_OPSET = 17


@dataclass
class StaticGraph:
    """Nodes of the data path in topological order, with every tensor's shape, dtype and,
    for constants, value. `values` holds the probe run's tensors (batch as given)."""

    nodes: list[onnx.NodeProto]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    inputs: list[str]
    outputs: list[str]
    opset: int
    values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def is_float(self, name: str) -> bool:
        return name in self.dtypes and self.dtypes[name].type in FLOAT_TYPES

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def to_model(self, outputs: Iterable[str] | None = None, extra_nodes: Iterable[onnx.NodeProto] = (),
                 extra_constants: Mapping[str, np.ndarray] = (),
                 output_shapes: Mapping[str, tuple[int, ...]] = ()) -> onnx.ModelProto:
        """The graph as a model with static shapes (`outputs` default: the graph's;
        `output_shapes` for outputs that the extra nodes make, float32 unless known)."""
        shapes = {**self.shapes, **dict(output_shapes)}
        nodes = list(self.nodes) + list(extra_nodes)
        constants = {**self.constants, **dict(extra_constants)}
        used = {i for n in nodes for i in reads(n)} | set(outputs or self.outputs)
        graph = helper.make_graph(
            nodes, "static",
            [helper.make_tensor_value_info(n, _elem(self.dtypes[n]), self.shapes[n]) for n in self.inputs],
            [helper.make_tensor_value_info(n, _elem(self.dtypes[n]) if n in self.dtypes else onnx.TensorProto.FLOAT,
                                           shapes[n]) for n in (outputs or self.outputs)],
            [numpy_helper.from_array(v, k) for k, v in constants.items() if k in used])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model


def _elem(dtype: np.dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def lifted(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` at opset MIN_OPSET or newer: the gradient rules write ops in their opset-17
    form (ReduceSum with axes as an input, ScatterElements with a reduction)."""
    version = opset_of(model)
    if version >= MIN_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError / ValidationError subtypes
        raise ExportError(f"the model's opset {version} could not be converted to opset {MIN_OPSET} "
                          f"({str(exc).splitlines()[0][:160]})") from None


def inlined(model: onnx.ModelProto) -> onnx.ModelProto:
    """Local functions inlined and initializers dropped from the graph inputs (IR < 4)."""
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    constant_names = {t.name for t in model.graph.initializer}
    if any(i.name in constant_names for i in model.graph.input):
        kept = [i for i in model.graph.input if i.name not in constant_names]
        del model.graph.input[:]
        model.graph.input.extend(kept)
    return model


def with_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in shapes:
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for size in shapes[value.name]:
                shape.dim.add().dim_value = int(size)
    for value in fixed.graph.output:  # output shapes follow from the inputs
        value.type.tensor_type.ClearField("shape")
    del fixed.graph.value_info[:]
    return fixed


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the error comes back as one line of ours
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def probe(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of `model` for these feeds, from one onnxruntime run."""
    try:
        typed = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference is best effort: onnxruntime types what it runs
        typed = model
    elem = {v.name: v.type.tensor_type.elem_type for v in (*typed.graph.value_info, *typed.graph.output)}
    elem.update({o.name: o.type.tensor_type.elem_type for o in model.graph.output if o.type.tensor_type.elem_type})
    wanted = [o.name for o in model.graph.output] + [o for n in model.graph.node for o in n.output]
    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    del wide.graph.output[:]
    listed: set[str] = set()
    for name in wanted:
        if name and name not in listed and elem.get(name):
            wide.graph.output.append(helper.make_tensor_value_info(name, elem[name], None))
            listed.add(name)
    try:
        session = _session(wide)
        names = [o.name for o in session.get_outputs()]
        arrays = session.run(names, dict(feeds))
    except Exception as exc:  # onnxruntime's own error types
        raise ExportError(f"onnxruntime cannot run the model with shapes "
                          f"{ {k: list(v.shape) for k, v in feeds.items()} } "
                          f"({str(exc).splitlines()[0][:200]})") from None
    values = dict(feeds)
    values.update(zip(names, arrays))
    return values


def normalise(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> StaticGraph:
    """`model` with the shapes of `feeds` fixed and its constant sub-graphs folded."""
    model = with_input_shapes(lifted(inlined(model)), {k: v.shape for k, v in feeds.items()})
    outputs = [o.name for o in model.graph.output]
    live = live_nodes(list(model.graph.node), outputs)  # nothing off the path to the outputs is run
    del model.graph.node[:]
    model.graph.node.extend(live)
    values = probe(model, feeds)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept: list[onnx.NodeProto] = []
    for node in model.graph.node:
        constant_inputs = all(i in constants for i in reads(node))
        if holds_graph(node) and not constant_inputs:
            raise ExportError(f"op {node.op_type} (node {node.name!r}) holds a sub-graph on the data path: control "
                              "flow cannot be differentiated; export the classifier without it")
        foldable = node.domain in ("", "ai.onnx") and node.op_type not in NONDETERMINISTIC and (
            node.op_type in SHAPE_READERS or constant_inputs)
        if foldable and all(o in values for o in node.output if o):
            constants.update({o: values[o] for o in node.output if o})
        else:
            kept.append(node)
    nodes = live_nodes(kept, outputs)
    inputs = [i.name for i in model.graph.input]
    shapes = {k: tuple(int(d) for d in np.shape(v)) for k, v in values.items()}
    dtypes = {k: np.asarray(v).dtype for k, v in values.items()}
    shapes.update({k: tuple(v.shape) for k, v in constants.items()})
    dtypes.update({k: v.dtype for k, v in constants.items()})
    missing = [o for n in nodes for o in n.output if o and o not in shapes]
    if missing:
        raise ExportError(f"onnxruntime could not report the tensor {missing[0]!r}: its type is unknown")
    return StaticGraph(nodes, constants, shapes, dtypes, inputs, outputs, opset_of(model), values)


def holds_graph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor `node` reads: its inputs and, for If/Loop/Scan, the outer-scope names
    its sub-graphs use."""
    names = {i for i in node.input if i}
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            inner = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {
                o for n in graph.node for o in n.output}
            names |= {i for n in graph.node for i in reads(n) if i not in inner}
    return names


def live_nodes(nodes: list[onnx.NodeProto], outputs: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes that some output depends on, in their order."""
    wanted = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in wanted for o in node.output):
            live.append(node)
            wanted.update(reads(node))
    return live[::-1]
