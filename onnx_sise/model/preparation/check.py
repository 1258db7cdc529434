"""The check every preparation passes (docs/design.md section 4, step 8): the explainable
file scores like the original classifier (SCORE_TOLERANCE), and at every tap the gradient
agrees with central differences of the original graph along a random direction d
(restricted to entries off the activation kinks, |a| > KINK_FLOOR max|a|):

    error = |fd - <g, d>| / max(|fd|, |<g, d>|, rms over d of <g, d>)

The exact check runs in float64 with onnx's reference evaluator (float64.py) where the
model is small enough (FLOAT64_MAX_MACS), at three step sizes, the best counting (a step
that carries some ReLU of the net across its kink spoils the difference): exact rules give
1e-9 to 5e-6 on the real models of the tests, FLOAT64_TOLERANCE leaves room for kinks. Beyond the budget,
onnxruntime float32 differences are a smoke check (noise-limited through deep ReLU nets,
1e-2 to 2e-1); where they miss, the float64 check decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from onnx_sise.errors import ExportError
from onnx_sise.model.info import ModelInfo

from . import compose
from .float64 import Float64Evaluator, evaluate
from .static_graph import StaticGraph

if TYPE_CHECKING:
    from .differentiate import GradientGraph

log = logging.getLogger("onnx_sise.prepare")
SCORE_TOLERANCE = 1e-4
FLOAT64_TOLERANCE = 1e-3
FLOAT32_TOLERANCE = 0.3
FLOAT64_MAX_MACS = 2.5e9
KINK_FLOOR = 1e-3
DIRECTIONS = 1


def multiply_adds(graph: StaticGraph) -> float:
    """Multiply-adds of one forward pass (convolutions and matrix products)."""
    total = 0.0
    for node in graph.nodes:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            weight = graph.shapes.get(node.input[1], ())
            total += float(np.prod(graph.shapes[node.output[0]])) * float(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            total += float(np.prod(graph.shapes[node.output[0]])) * float(graph.shapes[node.input[0]][-1])
    return total


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise ExportError(f"onnxruntime cannot load the prepared model ({str(exc).splitlines()[0][:200]})") from None


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.abs(expected).max())
    return float(np.abs(actual - expected).max() / scale) if scale > 0 else float(np.abs(actual).max())


def _psi(raw: np.ndarray, kind: str) -> np.ndarray:
    if kind == "logits":
        e = np.exp(raw - raw.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return 1 / (1 + np.exp(-raw)) if kind == "sigmoid" else raw


def _perturbable(graph: StaticGraph, taps: Sequence[str]) -> onnx.ModelProto:
    """The forward graph with an input delta/<tap> added to each tap: objective(a + delta)."""
    rename = {t: f"{t}{compose.PREFIX}raw" for t in taps}
    nodes = []
    for node in graph.nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.output[:] = [rename.get(o, o) for o in copy.output]
        nodes.append(copy)
        for o in node.output:
            if o in rename:
                nodes.append(helper.make_node("Add", [rename[o], f"{compose.PREFIX}delta/{o}"], [o]))
    model = graph.to_model([compose.OBJECTIVE])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.input.extend(helper.make_tensor_value_info(f"{compose.PREFIX}delta/{t}", onnx.TensorProto.FLOAT,
                                                           graph.shapes[t]) for t in taps)
    return model


def verify(joined: onnx.ModelProto, model: onnx.ModelProto, image_name: str, info: ModelInfo,
           gradient: GradientGraph, taps: Sequence[str], example: np.ndarray, check: str) -> dict[str, float]:
    """Measured errors of the prepared file (ExportError beyond the tolerances); with
    check "none" the scores only (the caller checks the gradients another way)."""
    started = time.perf_counter()
    report = _scores(joined, model, image_name, info, example)
    if check == "none":
        return report
    forward = gradient.forward
    mode = check if check != "auto" else ("float64" if multiply_adds(forward) <= FLOAT64_MAX_MACS else "float32")
    scores = np.asarray(forward.values[compose.SCORES])
    target = int(np.argmax(scores[0]))
    weights = np.zeros((1, info.num_classes), np.float32)
    weights[0, target] = 1.0
    feeds = {compose.IMAGE: example, compose.TARGET_WEIGHTS: weights, compose.LOGIT_WEIGHTS: weights * 0.01,
             compose.BY_RANK: np.array(False)}
    tolerance = FLOAT64_TOLERANCE if mode == "float64" else FLOAT32_TOLERANCE
    errors = _directional(gradient, taps, feeds, mode == "float64", tolerance)
    report[f"{mode}_directional"] = max(errors)
    if max(errors) > tolerance and mode == "float32" and check == "auto":
        # float32 differences can drown in rounding (a near-uniform softmax, a deep ReLU
        # stack): the exact check decides, however long it takes.
        log.warning("the float32 smoke check missed by %.2g; running the float64 check", max(errors))
        mode, tolerance = "float64", FLOAT64_TOLERANCE
        errors = _directional(gradient, taps, feeds, True, tolerance)
        report["float64_directional"] = max(errors)
    report["check_seconds"] = round(time.perf_counter() - started, 2)
    if max(errors) > tolerance:
        worst = int(np.argmax(errors)) // DIRECTIONS
        raise ExportError(f"the gradient at tap {taps[worst]!r} differs from central differences of the model by "
                          f"{max(errors):.2g} ({mode}; tolerance {tolerance:g}): the preparation is not faithful")
    log.info("verified: %s", report)
    return report


def _scores(joined: onnx.ModelProto, model: onnx.ModelProto, image_name: str, info: ModelInfo,
            example: np.ndarray) -> dict[str, float]:
    original = _session(model)
    batch = np.concatenate([example, example[..., ::-1], np.zeros_like(example)]).astype(np.float32)
    raw = np.concatenate([original.run(None, {image_name: b[None]})[0] for b in batch])
    prepared = _session(joined)
    names = info.graph
    (batch_scores,) = prepared.run([names.batch_scores], {names.masked_batch: batch})
    (logits,) = prepared.run([names.logits], {names.image: example, names.gradient_switch: np.array(True)})
    report = {"scores": _relative(batch_scores, _psi(raw, info.output_kind)), "logits": _relative(logits, raw[:1])}
    if max(report.values()) > SCORE_TOLERANCE:
        raise ExportError(f"the prepared model's scores differ from the original's by {report}: not faithful")
    return report


def _directional(gradient: GradientGraph, taps: Sequence[str], feeds: dict[str, np.ndarray],
                 exact: bool, tolerance: float) -> list[float]:
    """|fd - <g, d>| / max(|fd|, |<g, d>|, rms of <g, d>) for DIRECTIONS random normal d
    per tap (the last term keeps a direction that happens to be nearly orthogonal to g
    from turning rounding into a large relative error)."""
    forward = gradient.forward
    grad_model = forward.to_model([*gradient.raw_gradients, *taps], gradient.emitter.nodes, gradient.emitter.constants,
                                  {g: forward.shapes[t] for g, t in zip(gradient.raw_gradients, taps)})
    perturbable = _perturbable(forward, taps)
    zeros = {f"{compose.PREFIX}delta/{t}": np.zeros(forward.shapes[t], np.float32) for t in taps}
    if exact:
        values = evaluate(grad_model, feeds)
        del grad_model
        evaluator = Float64Evaluator(perturbable)

        def objective(deltas: dict[str, np.ndarray]) -> float:
            return float(evaluator.run({**feeds, **zeros, **deltas}, [compose.OBJECTIVE])[0])
    else:
        values = _session(grad_model).run(None, feeds)
        session = _session(perturbable)

        def objective(deltas: dict[str, np.ndarray]) -> float:
            return float(session.run([compose.OBJECTIVE], {**feeds, **zeros, **deltas})[0])
    grads, activations = values[:len(taps)], values[len(taps):]
    rng = np.random.default_rng(3)
    # A step that carries some element of the net across an activation kink spoils the
    # difference; the smaller step rarely does, the larger one limits rounding error.
    relative_steps = (1e-6, 1e-7, 1e-8) if exact else (1e-3, 1e-2)
    dtype = np.float64 if exact else np.float32
    errors = []
    for tap, g, a in zip(taps, grads, activations):
        a = np.asarray(a, np.float64)
        off_kink = np.abs(a) > KINK_FLOOR * max(float(np.abs(a).max()), 1e-30)
        g = np.asarray(g, np.float64)
        typical = float(np.linalg.norm(g * off_kink))  # the root-mean-square of <g, d> over such d
        for _ in range(DIRECTIONS):
            d = rng.normal(size=a.shape) * off_kink
            analytic = float(np.sum(g * d))
            best = np.inf
            for relative in relative_steps:
                step = relative * float(np.abs(a).max()) / max(float(np.abs(d).max()), 1e-30)
                delta = f"{compose.PREFIX}delta/{tap}"
                fd = (objective({delta: (step * d).astype(dtype)}) - objective({delta: (-step * d).astype(dtype)})) / (2 * step)
                best = min(best, abs(fd - analytic) / max(abs(fd), abs(analytic), typical, 1e-30))
                if best <= tolerance / 100:  # clearly exact: the smaller steps would add nothing
                    break
            errors.append(float(best))
    return errors
