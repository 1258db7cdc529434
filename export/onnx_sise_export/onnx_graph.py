"""Joining the gradient graph (batch 1) and the plain scoring graph (dynamic batch)
into one explainable ONNX that shares its weights.

Both sub-graphs' inputs become graph inputs with zero-valued default initializers, so
onnxruntime runs either one alone: it computes only what the requested outputs need,
and an input with a default needs no feed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnx.inliner
import onnx_ir
import onnxscript.optimizer
from onnx import numpy_helper

from onnx_sise.errors import ExportError
from onnx_sise.model_info import GraphNames


def _rename_everywhere(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in coll:
            item.name = mapping.get(item.name, item.name)


def _tensor_key(tensor: onnx.TensorProto) -> str:
    array = numpy_helper.to_array(tensor)
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    return f"{array.dtype}:{array.shape}:{digest}"


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every constant sub-expression folded and nothing else rewritten."""
    graph = onnx_ir.serde.deserialize_model(model)
    onnxscript.optimizer.fold_constants(graph)
    onnxscript.optimizer.remove_unused_nodes(graph)
    return onnx_ir.serde.serialize_model(graph)


def _zeros_default(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> onnx.TensorProto:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name=value.name)


def join_graphs(gradient: onnx.ModelProto, scoring: onnx.ModelProto, tap_names: list[str],
                image_shape: tuple[int, ...], num_classes: int, names: GraphNames) -> onnx.ModelProto:
    """One model: gradient outputs (logits, scores, activations, gradients) and
    batch_scores, with weights stored once."""
    gradient = onnx.inliner.inline_local_functions(gradient)
    scoring = onnx.inliner.inline_local_functions(scoring)
    g, s = gradient.graph, scoring.graph
    if len(g.input) != 3 or len(s.input) != 1:
        raise ExportError("unexpected exported graph inputs: expected (image, target_weights, logit_weights) "
                          "and (images)")
    expected_outputs = 2 + 2 * len(tap_names)
    if len(g.output) != expected_outputs:
        raise ExportError(f"the gradient graph has {len(g.output)} outputs, expected {expected_outputs}")
    activation_names = [f"activation/{t}" for t in tap_names]
    gradient_names = [f"gradient/{t}" for t in tap_names]
    _rename_everywhere(g, {
        g.input[0].name: names.image, g.input[1].name: names.target_weights, g.input[2].name: names.logit_weights,
        **dict(zip([o.name for o in g.output], [names.logits, names.scores, *activation_names, *gradient_names])),
    })

    existing = {_tensor_key(t): t.name for t in g.initializer}
    mapping: dict[str, str] = {}
    for tensor in s.initializer:
        mapping[tensor.name] = existing.get(_tensor_key(tensor), f"scoring/{tensor.name}")
    for node in s.node:
        for name in node.output:
            mapping.setdefault(name, f"scoring/{name}")
    for value in s.value_info:
        mapping.setdefault(value.name, f"scoring/{value.name}")
    mapping[s.input[0].name] = names.masked_batch
    mapping[s.output[0].name] = names.batch_scores
    for node in s.node:
        node.name = f"scoring/{node.name}"
    _rename_everywhere(s, mapping)

    shared = {t.name for t in g.initializer}
    new_initializers = [t for t in s.initializer if t.name not in shared]
    graph = onnx.helper.make_graph(
        nodes=list(g.node) + list(s.node),
        name="onnx_sise_explainable",
        inputs=[g.input[0], g.input[1], g.input[2], s.input[0]],
        outputs=list(g.output) + list(s.output),
        initializer=list(g.initializer) + new_initializers + [
            _zeros_default(g.input[0], image_shape),
            _zeros_default(g.input[1], (1, num_classes)),
            _zeros_default(g.input[2], (1, num_classes)),
            _zeros_default(s.input[0], image_shape),
        ],
        value_info=list(g.value_info) + list(s.value_info),
    )
    opsets = {o.domain: o.version for o in gradient.opset_import}
    for o in scoring.opset_import:
        if opsets.setdefault(o.domain, o.version) != o.version:
            raise ExportError(f"the two exported graphs use different opsets for domain {o.domain!r}")
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = min(gradient.ir_version, 10)
    model.producer_name = "onnx_sise"
    return model


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)
