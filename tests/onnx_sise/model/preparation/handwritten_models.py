"""Small classifiers written directly with onnx.helper, as tf2onnx or other exporters
would leave them: NHWC with a Transpose, Softmax heads, Flatten+MatMul heads, run-time
shape arithmetic, dynamic batch, opsets 11 to 21, external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32
CLASSES = 5


def build(path: Path, *, layout: str = "NCHW", head: str = "gap", softmax: bool = False, opset: int = 17,
          dynamic_batch: bool = True, external: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    batch = "N" if dynamic_batch else 1
    shape = [batch, 3, SIZE, SIZE] if layout == "NCHW" else [batch, SIZE, SIZE, 3]
    x = "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"))
        x = "nchw"
    w1 = const("w1", rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32))
    b1 = const("b1", rng.normal(0, 0.1, 8).astype(np.float32))
    nodes += [helper.make_node("Conv", [x, w1, b1], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
              helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1")]
    w2 = const("w2", rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32))
    nodes += [helper.make_node("Conv", ["p1", w2], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
              helper.make_node("Relu", ["c2"], ["r2"], name="relu2")]
    if head == "gap":
        wf = const("wf", rng.normal(0, 0.5, (CLASSES, 16)).astype(np.float32))
        bf = const("bf", rng.normal(0, 0.1, CLASSES).astype(np.float32))
        nodes += [helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
                  helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
                  helper.make_node("Gemm", ["flat", wf, bf], ["logits"], transB=1, name="fc")]
    else:
        features = 16 * (SIZE // 4) ** 2
        wf = const("wf", rng.normal(0, 0.05, (features, CLASSES)).astype(np.float32))
        bf = const("bf", rng.normal(0, 0.1, CLASSES).astype(np.float32))
        if head == "flatten":
            nodes.append(helper.make_node("Flatten", ["r2"], ["flat"], name="flatten"))
        else:  # "dynamic_reshape": tf2onnx's Shape -> Gather -> Unsqueeze -> Concat -> Reshape
            nodes += [helper.make_node("Shape", ["r2"], ["shape"], name="shape"),
                      helper.make_node("Gather", ["shape", const("zero", np.array(0, np.int64))], ["n"], axis=0,
                                       name="batch_size")]
            if opset >= 13:
                nodes.append(helper.make_node("Unsqueeze", ["n", const("axes0", np.array([0], np.int64))], ["n1"],
                                              name="unsqueeze"))
            else:
                nodes.append(helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0], name="unsqueeze"))
            nodes += [helper.make_node("Concat", ["n1", const("rest", np.array([-1], np.int64))], ["target_shape"],
                                       axis=0, name="concat"),
                      helper.make_node("Reshape", ["r2", "target_shape"], ["flat"], name="reshape")]
        nodes += [helper.make_node("MatMul", ["flat", wf], ["mm"], name="matmul"),
                  helper.make_node("Add", ["mm", bf], ["logits"], name="bias")]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1 if opset < 13 else -1,
                                      name="softmax"))
        out = "probabilities"
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 10
    onnx.checker.check_model(model)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{path.stem}.weights", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def build_graph(path: Path, nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def refusal_models(folder: Path) -> dict[str, Path]:
    """Models that cannot be explained, one per reason."""
    rng = np.random.default_rng(0)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    models = {}
    models["not_4d"] = build_graph(
        folder / "mlp.onnx", [helper.make_node("MatMul", ["x", "m"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "m")])
    models["segmentation"] = build_graph(
        folder / "seg.onnx", [helper.make_node("Conv", ["image", "w"], ["mask"], pads=[1, 1, 1, 1])], [image],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 4, SIZE, SIZE])], [w])
    fc = numpy_helper.from_array(rng.normal(size=(4 * SIZE * SIZE, 3)).astype(np.float32), "fc")
    models["no_downsampling"] = build_graph(
        folder / "flat.onnx", [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Flatten", ["c"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["y"])],
        [image], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, fc])
    head = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "head")
    models["unsupported_op"] = build_graph(
        folder / "hardmax.onnx", [helper.make_node("Conv", ["image", "w"], ["c"], strides=[2, 2], name="conv"),
                                  helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
                                  helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
                                  helper.make_node("MatMul", ["f", "head"], ["logits"], name="fc"),
                                  helper.make_node("Hardmax", ["logits"], ["y"], name="the_hardmax")],
        [image], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, head])
    return models
