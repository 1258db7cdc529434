"""Joining the plain scoring graph (dynamic batch), the gradient graph (batch 1) and
the mask-gradient graph into one explainable ONNX that shares its weights.

Every sub-graph's inputs become graph inputs with zero-valued default initializers, so
an input with a default needs no feed. onnxruntime runs every node of a graph on every
call, whatever the requested outputs, so the gradient and mask-gradient graphs sit in
the then-branch of an If on a bool switch input (default false): a masked pass runs the
scoring graph alone, and the gradient call feeds `gradient/enabled` = true.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from onnx_sise.errors import ExportError
from onnx_sise.model.info import GraphNames


def rename_everywhere(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Every name in `mapping` renamed in `graph` and in the sub-graphs of its If and Loop nodes."""
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for inner in _subgraphs(node):
            rename_everywhere(inner, mapping)
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in coll:
            item.name = mapping.get(item.name, item.name)


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [g for a in node.attribute for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs)]


def _defined(graph: onnx.GraphProto) -> list[str]:
    """The names the nodes of `graph` and of its sub-graphs make, and the sub-graphs' inputs."""
    names = []
    for node in graph.node:
        names += [o for o in node.output if o]
        for inner in _subgraphs(node):
            names += [i.name for i in inner.input] + _defined(inner)
    return names


def _tensor_key(tensor: onnx.TensorProto) -> str:
    array = numpy_helper.to_array(tensor)
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    return f"{array.dtype}:{array.shape}:{digest}"


def _zeros_default(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> onnx.TensorProto:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name=value.name)


def scoring_model(scoring: onnx.ModelProto, image_shape: tuple[int, ...], names: GraphNames) -> onnx.ModelProto:
    """The scoring graph (dynamic batch) with its input and output named as in `names`
    and a zero default for its input, the base the other sub-graphs are attached to."""
    scoring = onnx.inliner.inline_local_functions(scoring)
    s = scoring.graph
    if len(s.input) != 1 or len(s.output) != 1:
        raise ExportError(f"the scoring graph has {len(s.input)} inputs and {len(s.output)} outputs, expected 1 and 1")
    rename_everywhere(s, {s.input[0].name: names.masked_batch, s.output[0].name: names.batch_scores})
    for index, node in enumerate(s.node):
        node.name = f"scoring/{index}/{node.name}"
    s.initializer.append(_zeros_default(s.input[0], image_shape))
    s.name = "onnx_sise_explainable"
    scoring.ir_version = min(scoring.ir_version, 10)
    scoring.producer_name = "onnx_sise"
    return scoring


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def attach_graph(model: onnx.ModelProto, sub: onnx.ModelProto, prefix: str, inputs: list[tuple[str, tuple[int, ...]]],
                 outputs: list[str], switch: str, branch_weights: Collection[str] = ()) -> onnx.ModelProto:
    """`model` with the graph of `sub` added beside what it holds, behind a switch.

    `sub`'s inputs are renamed to `inputs` (name, shape of its zero default initializer,
    so that the rest of the model still runs without feeding them; a dimension where the
    default has 1 becomes symbolic, the default broadcasting) and its outputs to
    `outputs`; every other name gets `prefix`; weights equal to one of `model`'s are
    stored once. onnxruntime runs every node of a graph on every call, whatever the
    requested outputs, so the added nodes sit in the then-branch of an If on the bool
    input `switch` (default false): unless it is fed true, the outputs are empty and the
    added graph costs nothing. Initializers named in `branch_weights` are stored inside the
    branch instead (a second copy): onnxruntime's blocked-layout (NCHWc) convolutions only
    take weights and biases that are initializers of the graph the Conv is in."""
    sub = onnx.inliner.inline_local_functions(sub)
    g, s = model.graph, sub.graph
    if len(s.input) != len(inputs) or len(s.output) != len(outputs):
        raise ExportError(f"the {prefix} graph has {len(s.input)} inputs and {len(s.output)} outputs, "
                          f"expected {len(inputs)} and {len(outputs)}")
    existing = {_tensor_key(t): t.name for t in g.initializer}
    mapping: dict[str, str] = {}
    inner = f"{prefix}/t/"  # no input, output or switch name starts with it
    for tensor in s.initializer:
        local = tensor.name in branch_weights
        mapping[tensor.name] = inner + tensor.name if local else existing.get(_tensor_key(tensor), inner + tensor.name)
    local_names = {mapping[n] for n in branch_weights if n in mapping}
    for name in _defined(s):
        mapping.setdefault(name, inner + name)
    for value in s.value_info:
        mapping.setdefault(value.name, inner + value.name)
    mapping.update({value.name: name for value, (name, _) in zip(s.input, inputs)})
    mapping.update({value.name: f"{prefix}/branch/{name}" for value, name in zip(s.output, outputs)})
    for index, node in enumerate(s.node):
        node.name = f"{prefix}/{index}/{node.name}"
    rename_everywhere(s, mapping)
    for value, (name, shape) in zip(s.input, inputs):
        for axis, (dim, size) in enumerate(zip(value.type.tensor_type.shape.dim, shape)):
            if size == 1 and dim.dim_value != 1:
                dim.dim_param = f"{name}_{axis}"
    branch_outputs = []
    empty_outputs = []
    for value, name in zip(s.output, outputs):
        elem = value.type.tensor_type.elem_type
        rank = len(value.type.tensor_type.shape.dim)
        branch_outputs.append(onnx.helper.make_tensor_value_info(value.name, elem, [None] * rank))
        empty_shape = [0] + [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
        empty = np.zeros(empty_shape, dtype=onnx.helper.tensor_dtype_to_np_dtype(elem))
        empty_outputs.append(onnx.helper.make_node("Constant", [], [f"{prefix}/empty/{name}"],
                                                   value=numpy_helper.from_array(empty), name=f"{prefix}/empty/{name}"))
    then_branch = onnx.helper.make_graph(list(s.node), f"{prefix}_on", [], branch_outputs, value_info=list(s.value_info),
                                         initializer=[t for t in s.initializer if t.name in local_names])
    else_branch = onnx.helper.make_graph(empty_outputs, f"{prefix}_off", [], [
        onnx.helper.make_tensor_value_info(n.output[0], v.type.tensor_type.elem_type, [None] * len(v.type.tensor_type.shape.dim))
        for n, v in zip(empty_outputs, s.output)])
    gate = onnx.helper.make_node("If", [switch], list(outputs), then_branch=then_branch, else_branch=else_branch,
                                 name=f"{prefix}/switch")
    shared = {t.name for t in g.initializer}
    opsets = {o.domain: o.version for o in model.opset_import}
    for o in sub.opset_import:
        if opsets.setdefault(o.domain, o.version) != o.version:
            raise ExportError(f"the {prefix} graph uses a different opset for domain {o.domain!r}")
    graph = onnx.helper.make_graph(
        nodes=list(g.node) + [gate],
        name=g.name,
        inputs=list(g.input) + list(s.input) + [onnx.helper.make_tensor_value_info(switch, onnx.TensorProto.BOOL, [])],
        outputs=list(g.output) + [onnx.helper.make_tensor_value_info(name, v.type.tensor_type.elem_type, None)
                                  for name, v in zip(outputs, s.output)],
        initializer=list(g.initializer) + [t for t in s.initializer if t.name not in shared | local_names] + [
            _zeros_default(value, shape) for value, (_, shape) in zip(s.input, inputs)] + [
            numpy_helper.from_array(np.array(False), name=switch)],
        value_info=list(g.value_info),
    )
    joined = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
    joined.ir_version = model.ir_version
    joined.producer_name = model.producer_name
    joined.metadata_props.extend(model.metadata_props)
    return joined
