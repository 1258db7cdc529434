"""The head of an explainable ONNX at one tap: the sub-graph of its scoring graph from
the tap's tensor to the class outputs, for the methods that perturb feature maps instead
of the input (Ablation-CAM, Recipro-CAM). Cut once per model and tap, opened in its own
onnxruntime session with the model's settings, and checked against the whole model:
head(A) must give the model's logits y for the activations A of a probe image.

A head exists only where everything after the tap depends on the image through the tap
alone: a tap bypassed by a skip connection (a tensor from before it read downstream) has
none, and is refused in one line.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from ..errors import ModelError, OptionError
from .info import Tap
from .runtime import model_bytes, open_session
from .session import ExplainableModel, run
from .shapes import expect_shape, image_dims

FEATURES, LOGITS, SCORES = "head/features", "head/logits", "head/scores"
SCORING_PREFIX = "scoring/"  # the scoring graph's tensors (preparation/build.py, scoring_graph)
PROBE_SEED = 0
# |head(A) - y| allowed, relative to max |y|: the same float32 operations, fused differently.
PROBE_TOLERANCE = 1e-3


def tap_tensor(graph: onnx.GraphProto, tap: Tap, source: str) -> tuple[str, list[int] | None]:
    """The scoring graph's tensor that holds `tap`, and the permutation from its layout to
    NCHW (None where it is NCHW already), read from the gradient branch that outputs the
    tap: Identity (or Transpose) of `<branch>/t/<tensor>`, which is `scoring/<tensor>` in
    the scoring graph."""
    for node in graph.node:
        if node.op_type != "If" or tap.activation_output not in node.output:
            continue
        branch = next(a.g for a in node.attribute if a.name == "then_branch")
        wanted = branch.output[list(node.output).index(tap.activation_output)].name
        inner = node.name.rpartition("/")[0] + "/t/"
        for candidate in branch.node:
            if wanted in candidate.output and candidate.op_type in ("Identity", "Transpose") and \
                    candidate.input[0].startswith(inner):
                perm = next((list(a.ints) for a in candidate.attribute if a.name == "perm"), None)
                return SCORING_PREFIX + candidate.input[0][len(inner):], perm
    raise ModelError(f"{source} does not say which tensor tap {tap.name} is: export the model again with this "
                     "version of onnx_sise")


def _inverse(perm: list[int]) -> list[int]:
    return [perm.index(axis) for axis in range(len(perm))]


def cut_head(model: onnx.ModelProto, tap: Tap, batch_scores: str, source: str) -> onnx.ModelProto:
    """The head at `tap`: features (B, N, h, w) -> the raw class outputs y and Psi, (B, classes)
    each, made of the scoring graph's nodes between the tap's tensor and `batch_scores`."""
    graph = model.graph
    tensor, perm = tap_tensor(graph, tap, source)
    producer = {name: node for node in graph.node for name in node.output if name}
    if batch_scores not in producer:
        raise ModelError(f"{source} has no tensor {batch_scores!r}: export the model again")
    logits = producer[batch_scores].input[0]
    if tensor not in producer:
        raise ModelError(f"{source} has no tensor {tensor!r} for tap {tap.name}: export the model again")
    inputs = {i.name for i in graph.input}
    weights = {t.name: t for t in graph.initializer}
    needed: dict[int, onnx.NodeProto] = {}
    used_weights: set[str] = set()
    pending = [logits, batch_scores]
    seen = {tensor}
    order = {id(node): index for index, node in enumerate(graph.node)}
    while pending:
        name = pending.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inputs:
            raise OptionError(f"tap {tap.name} has no head: layers after it also read tensors from before it (a "
                              "skip connection around it); choose another layer")
        if name in weights:
            used_weights.add(name)
            continue
        node = producer.get(name)
        if node is None:
            raise ModelError(f"{source} reads a tensor {name[:80]!r} that nothing makes: export the model again")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise OptionError(f"tap {tap.name} has no head: a control-flow node ({node.op_type}) follows it; "
                              "choose another layer")
        needed[order[id(node)]] = node
        pending.extend(node.input)
    entry = helper.make_node("Transpose", [FEATURES], [tensor], perm=_inverse(perm)) if perm else \
        helper.make_node("Identity", [FEATURES], [tensor])
    nodes = [entry, *(needed[i] for i in sorted(needed)),
             helper.make_node("Identity", [logits], [LOGITS]), helper.make_node("Identity", [batch_scores], [SCORES])]
    head = helper.make_graph(
        nodes, "onnx_sise_head",
        [helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", tap.channels, tap.height, tap.width])],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", None]) for name in (LOGITS, SCORES)],
        [weights[name] for name in sorted(used_weights)])
    cut = helper.make_model(head, opset_imports=list(model.opset_import))
    cut.ir_version = model.ir_version
    return cut


@dataclass(frozen=True)
class Head:
    """A model's head at one tap in onnxruntime (no reference to the model: the cache below
    holds heads by weak reference to their model)."""

    session: ort.InferenceSession
    classes: int
    source: str

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """y and Psi (B, classes) each, for feature maps (B, N, h, w) of the tap."""
        logits, scores = run(self.session, [LOGITS, SCORES], {FEATURES: np.ascontiguousarray(features, np.float32)},
                             self.source)
        expect_shape(logits, (features.shape[0], self.classes), LOGITS, self.source)
        expect_shape(scores, (features.shape[0], self.classes), SCORES, self.source)
        return logits, scores


_heads: weakref.WeakKeyDictionary[ExplainableModel, dict[int, Head]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def head_of(model: ExplainableModel, index: int) -> Head:
    """The head of `model` at tap `index`, cut and opened on first use, then kept as long
    as the model (one per model and tap, whatever the thread)."""
    with _lock:
        found = _heads.setdefault(model, {}).get(index)
        if found is None:
            found = _heads[model][index] = _open(model, index)
        return found


def _open(model: ExplainableModel, index: int) -> Head:
    tap = model.info.taps[index]
    data, external = model_bytes(model.data if model.data is not None else model.path, model.source)
    if external:
        raise ModelError(f"{model.source} is over 2 GiB with its weights: its head at {tap.name} cannot be cut")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"{model.source} is not a loadable ONNX model ({str(exc)[:120]})") from None
    cut = cut_head(proto, tap, model.info.graph.batch_scores, model.source)
    head = Head(open_session(cut.SerializeToString(), f"the head of {model.source} at {tap.name}", model.options,
                             model.providers), model.info.num_classes, model.source)
    probe = np.random.default_rng(PROBE_SEED).normal(size=image_dims(model.info.input, 1)[1:]).astype(np.float32)
    logits, activations = model.logits_and_activations(probe)
    ours, _ = head(activations[index][None])
    if np.abs(ours[0] - logits).max() > PROBE_TOLERANCE * max(1.0, float(np.abs(logits).max())):
        raise ModelError(f"the head of {model.source} at {tap.name} does not give the model's outputs: the file "
                         "changed since it was loaded, or its scoring and gradient graphs differ; export it again")
    return head
