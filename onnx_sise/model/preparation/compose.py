"""The forward graphs that are differentiated, composed from the classifier's own graph:
the block-gradient objective (SISE eq. 6 before the spatial sum; the raw class output for
the Grad-CAM family) and SIGCAM's mask objective (AOP eq. 6). Every name added here
starts with PREFIX, so it cannot meet a name of the classifier's graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_sise.errors import ExportError
from onnx_sise.kernels import bilinear_matrix

PREFIX = "onnx_sise::"
IMAGE = PREFIX + "image"
TARGET_WEIGHTS = PREFIX + "target_weights"
LOGIT_WEIGHTS = PREFIX + "logit_weights"
LOGITS = PREFIX + "logits"
SCORES = PREFIX + "scores"
OBJECTIVE = PREFIX + "objective"
FROM_TAP = PREFIX + "from_tap"
BY_RANK = PREFIX + "by_rank"
RANKED_TARGET_WEIGHTS, RANKED_LOGIT_WEIGHTS = PREFIX + "ranked_target_weights", PREFIX + "ranked_logit_weights"
MASK_IMAGE, MASK_BASELINE, MASKS, MASK_NOISE = (PREFIX + n for n in ("mask_image", "mask_baseline", "masks", "noise"))
MASK_SCORES = PREFIX + "mask_scores"


def score_head(kind: str, logits: str, scores: str, axis: int = -1) -> onnx.NodeProto:
    """Psi of the papers: softmax of logits, sigmoid of multi-label logits, or the
    probabilities as they are."""
    if kind == "logits":
        return helper.make_node("Softmax", [logits], [scores], axis=axis, name=PREFIX + "softmax")
    if kind == "sigmoid":
        return helper.make_node("Sigmoid", [logits], [scores], name=PREFIX + "sigmoid")
    return helper.make_node("Identity", [logits], [scores], name=PREFIX + "identity")


def _retargeted(model: onnx.ModelProto, image_name: str, new_input: str) -> tuple[list[onnx.NodeProto], str]:
    """The classifier's nodes reading `new_input` where they read the image, and its output."""
    taken = [n for n in (*(o for node in model.graph.node for o in node.output), *(t.name for t in model.graph.initializer))
             if n.startswith(PREFIX)]
    if taken:
        raise ExportError(f"the model names a tensor {taken[0][:100]!r}: names starting with {PREFIX!r} are "
                          "reserved for onnx_sise; rename it")
    nodes = []
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [new_input if i == image_name else i for i in copy.input]
        nodes.append(copy)
    output = model.graph.output[0].name
    if output == image_name:
        output = new_input
    return nodes, output


def _model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: Sequence[str], initializers: Sequence[onnx.TensorProto] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "composed", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                              list(model.graph.initializer) + list(initializers))
    composed = helper.make_model(graph, opset_imports=list(model.opset_import))
    composed.ir_version = max(model.ir_version, 8)
    return composed


def gradient_objective(model: onnx.ModelProto, image_name: str, kind: str, num_classes: int,
                       extra_outputs: Sequence[str]) -> onnx.ModelProto:
    """image -> logits, scores = Psi(logits) and the objective
    sum(scores * target_weights) + sum(logits * logit_weights), with `extra_outputs` (the taps).

    With the bool input by_rank true, the weights' columns are ranks, not classes: column
    j weighs the class with the j-th highest score (ties: the lower class id first), so
    that one call can differentiate the top classes without knowing them beforehand."""
    nodes, output = _retargeted(model, image_name, IMAGE)
    nodes += [
        helper.make_node("Identity", [output], [LOGITS], name=PREFIX + "logits"),
        score_head(kind, LOGITS, SCORES),
        helper.make_node("TopK", [SCORES, PREFIX + "class_count"], [PREFIX + "ranked", PREFIX + "order"], axis=-1,
                         largest=1, sorted=1),
    ]
    for weights, ranked in ((TARGET_WEIGHTS, RANKED_TARGET_WEIGHTS), (LOGIT_WEIGHTS, RANKED_LOGIT_WEIGHTS)):
        nodes += [  # no Shape: the preparation folds shapes, and the rows vary
            helper.make_node("Mul", [weights, PREFIX + "zero"], [weights + "/zeros"]),
            helper.make_node("Cast", [weights + "/zeros"], [weights + "/zero_indices"], to=TensorProto.INT64),
            helper.make_node("Add", [weights + "/zero_indices", PREFIX + "order"], [weights + "/order"]),
            helper.make_node("ScatterElements", [weights + "/zeros", weights + "/order", weights],
                             [weights + "/by_class"], axis=1),
            helper.make_node("Where", [BY_RANK, weights + "/by_class", weights], [ranked]),
        ]
    nodes += [
        helper.make_node("Mul", [SCORES, RANKED_TARGET_WEIGHTS], [PREFIX + "weighted_scores"]),
        helper.make_node("ReduceSum", [PREFIX + "weighted_scores"], [PREFIX + "score_term"], keepdims=0),
        helper.make_node("Mul", [LOGITS, RANKED_LOGIT_WEIGHTS], [PREFIX + "weighted_logits"]),
        helper.make_node("ReduceSum", [PREFIX + "weighted_logits"], [PREFIX + "logit_term"], keepdims=0),
        helper.make_node("Add", [PREFIX + "score_term", PREFIX + "logit_term"], [OBJECTIVE]),
    ]
    image = next(i for i in model.graph.input if i.name == image_name)
    inputs = [helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, [d.dim_value or None for d in
                                                                      image.type.tensor_type.shape.dim]),
              helper.make_tensor_value_info(TARGET_WEIGHTS, TensorProto.FLOAT, [1, num_classes]),
              helper.make_tensor_value_info(LOGIT_WEIGHTS, TensorProto.FLOAT, [1, num_classes]),
              helper.make_tensor_value_info(BY_RANK, TensorProto.BOOL, [])]
    constants = [numpy_helper.from_array(np.array([num_classes], np.int64), PREFIX + "class_count"),
                 numpy_helper.from_array(np.array(0, np.float32), PREFIX + "zero")]
    return _model(model, nodes, inputs, [LOGITS, SCORES, OBJECTIVE, *extra_outputs], constants)


def mask_objective(model: onnx.ModelProto, image_name: str, kind: str, layout: str, height: int, width: int,
                   mask_size: int) -> onnx.ModelProto:
    """(image, baseline, masks, noise, target_weights) -> scores_b = sum_c w_c Psi_c(Phi_b)
    and their sum, where Phi_b = I . up(M_b) + I~ . (1 - up(M_b)) + noise_b (AOP eq. 6) and
    up() is the half-pixel bilinear upsampling of the core, as two constant matrices."""
    rows = numpy_helper.from_array(bilinear_matrix(height, mask_size), PREFIX + "rows")
    cols = numpy_helper.from_array(np.ascontiguousarray(bilinear_matrix(width, mask_size).T), PREFIX + "cols")
    one = numpy_helper.from_array(np.array(1.0, np.float32), PREFIX + "one")
    axis = numpy_helper.from_array(np.array([1], np.int64), PREFIX + "class_axis")
    up = PREFIX + "up"
    nodes = [helper.make_node("MatMul", [rows.name, MASKS], [PREFIX + "up_rows"]),
             helper.make_node("MatMul", [PREFIX + "up_rows", cols.name], [up])]
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [up], [PREFIX + "up_nhwc"], perm=[0, 2, 3, 1]))
        up = PREFIX + "up_nhwc"
    perturbed = PREFIX + "perturbed"
    nodes += [helper.make_node("Mul", [MASK_IMAGE, up], [PREFIX + "kept"]),
              helper.make_node("Sub", [one.name, up], [PREFIX + "dropped_weight"]),
              helper.make_node("Mul", [MASK_BASELINE, PREFIX + "dropped_weight"], [PREFIX + "dropped"]),
              helper.make_node("Add", [PREFIX + "kept", PREFIX + "dropped"], [PREFIX + "blend"]),
              helper.make_node("Add", [PREFIX + "blend", MASK_NOISE], [perturbed])]
    model_nodes, output = _retargeted(model, image_name, perturbed)
    nodes += model_nodes + [
        helper.make_node("Identity", [output], [LOGITS]),
        score_head(kind, LOGITS, SCORES),
        helper.make_node("Mul", [SCORES, TARGET_WEIGHTS], [PREFIX + "weighted_scores"]),
        helper.make_node("ReduceSum", [PREFIX + "weighted_scores", axis.name], [MASK_SCORES], keepdims=0),
        helper.make_node("ReduceSum", [MASK_SCORES], [OBJECTIVE], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
              for n in (MASK_IMAGE, MASK_BASELINE, MASKS, MASK_NOISE, TARGET_WEIGHTS)]
    return _model(model, nodes, inputs, [MASK_SCORES, OBJECTIVE], [rows, cols, one, axis])
