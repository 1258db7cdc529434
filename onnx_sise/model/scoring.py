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
