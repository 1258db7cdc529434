"""Checks a gradient graph built by onnx_sise.model.preparation against central differences
in float64 (onnx's reference evaluator) and against itself run in onnxruntime float32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnx_sise.model.preparation.differentiate import differentiate
from onnx_sise.model.preparation.emitter import Emitter
from onnx_sise.model.preparation.float64 import evaluate
from onnx_sise.model.preparation.static_graph import normalise


def objective_model(nodes: list[onnx.NodeProto], inputs: dict[str, np.ndarray], output: str,
                    output_shape: tuple[int, ...], initializers: dict[str, np.ndarray] | None = None,
                    opset: int = 17, seed: int = 12345) -> onnx.ModelProto:
    """`nodes` followed by objective = sum(output * W), W random: a scalar to differentiate."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=output_shape).astype(np.float32)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()]
    inits.append(numpy_helper.from_array(weights, "objective_weights"))
    nodes = list(nodes) + [helper.make_node("Mul", [output, "objective_weights"], ["weighted"]),
                           helper.make_node("ReduceSum", ["weighted"], ["objective"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "check",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("objective", TensorProto.FLOAT, [])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def check_gradient(model: onnx.ModelProto, inputs: dict[str, np.ndarray], wrt: list[str],
                   directions: int = 3, step: float = 1e-6, seed: int = 1) -> dict[str, float]:
    """Worst relative error, per tensor in `wrt`, of <gradient, v> against float64 central
    differences along random v; also float32 onnxruntime against the float64 gradient."""
    graph = normalise(model, inputs)
    emitter = Emitter("grad/")
    grads = differentiate(graph, "objective", wrt, emitter)
    grad_model = graph.to_model(outputs=grads, extra_nodes=emitter.nodes, extra_constants=emitter.constants,
                                  output_shapes={g: graph.shapes[t] for g, t in zip(grads, wrt)})
    onnx.checker.check_model(grad_model)
    feeds = {k: v for k, v in inputs.items()}
    exact = evaluate(grad_model, feeds, grads)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(grad_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fast = session.run(grads, feeds)
    rng = np.random.default_rng(seed)
    forward = graph.to_model(outputs=["objective"])
    report = {}
    for name, g64, g32 in zip(wrt, exact, fast):
        x = inputs[name].astype(np.float64)
        worst = 0.0
        for _ in range(directions):
            v = rng.normal(size=x.shape)
            plus = evaluate(forward, {**feeds, name: x + step * v}, ["objective"])[0]
            minus = evaluate(forward, {**feeds, name: x - step * v}, ["objective"])[0]
            fd = float((plus - minus) / (2 * step))
            analytic = float(np.sum(g64 * v))
            worst = max(worst, abs(fd - analytic) / max(abs(fd), abs(analytic), 1e-12))
        scale = max(float(np.abs(g64).max()), 1e-12)
        report[name] = worst
        report[f"{name}/float32"] = float(np.abs(g32 - g64).max() / scale)
    return report
