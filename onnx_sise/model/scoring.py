"""The scoring sub-graph of an explainable ONNX alone (docs/design.md section 3): the
top-level graph without the switched gradient branches (its If nodes), `masked_batch` in,
`batch_scores` (Psi of every class, SISE eq. 5's model score) out. OpenVINO compiles it
for the masked passes (model/openvino.py); the export package writes its variants from it."""

from __future__ import annotations

import onnx

from ..errors import ModelError
from .info import ModelInfo


def scoring_graph(model: onnx.ModelProto, info: ModelInfo, source: str) -> onnx.ModelProto:
    """`model`'s scoring sub-graph as a model of its own: the nodes that are not If, the
    input `masked_batch` (its zero default initializer dropped, so that it stays an input),
    the output `batch_scores`, and the initializers those nodes read."""
    names = info.graph
    nodes = [n for n in model.graph.node if n.op_type != "If"]
    used = {name for n in nodes for name in n.input}
    graph = onnx.helper.make_graph(
        nodes, "onnx_sise_scoring",
        [i for i in model.graph.input if i.name == names.masked_batch],
        [o for o in model.graph.output if o.name == names.batch_scores],
        initializer=[t for t in model.graph.initializer if t.name in used and t.name != names.masked_batch],
    )
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(f"{source} has no scoring sub-graph: export it again with this version of onnx_sise")
    scoring = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    scoring.ir_version = model.ir_version
    return scoring


def gradient_graph(model: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto | None:
    """The gradient sub-graph (docs/design.md sections 3-4, the then-branch of the If on
    `gradient/enabled`) as a model of its own: inputs `image`, `target_weights`,
    `logit_weights`; the If's outputs (logits, scores, every tap's activation and
    gradient) under their own names; the main graph's initializers the branch reads. None
    where the file has no such If, or has the staged gradient (its nested levels read the
    call's from_tap and by_rank, and onnxruntime runs only the levels asked for): the caller
    keeps onnxruntime's gradient call."""
    names = info.graph
    if info.staged_gradient is not None:
        return None
    node = next((n for n in model.graph.node if n.op_type == "If" and n.input[:1] == [names.gradient_switch]), None)
    branch = next((a.g for a in node.attribute if a.name == "then_branch"), None) if node is not None else None
    if branch is None or len(branch.output) != len(node.output):
        return None
    made = {o for n in branch.node for o in n.output} | {t.name for t in branch.initializer}
    outer = _read_names(branch) - made
    feeds = (names.image, names.target_weights, names.logit_weights)
    inputs = [i for i in model.graph.input if i.name in feeds]
    renames = [onnx.helper.make_node("Identity", [inner.name], [name])
               for inner, name in zip(branch.output, node.output) if inner.name != name]
    outputs = [onnx.helper.make_value_info(name, inner.type) for inner, name in zip(branch.output, node.output)]
    graph = onnx.helper.make_graph(
        [*branch.node, *renames], "onnx_sise_gradient", inputs, outputs,
        initializer=[*branch.initializer, *(t for t in model.graph.initializer if t.name in outer and t.name not in feeds)],
    )
    gradient = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    gradient.ir_version = model.ir_version
    return gradient


def _read_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the nodes of `graph` and of its sub-graphs read."""
    found: set[str] = set()
    for node in graph.node:
        found.update(node.input)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found |= _read_names(attribute.g)
    return found
