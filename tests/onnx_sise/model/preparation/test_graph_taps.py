"""Taps on a plain ONNX graph: the zoo's forward graphs give exactly the taps of the
module rule (onnx_sise_export.taps), and squeeze-and-excitation gates and one-axis
downsampling are handled."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_sise.model.preparation.static_graph import inlined, lifted, normalise
from onnx_sise.model.preparation.taps import find_taps


@pytest.mark.parametrize("name", ["efficientnet-lite0", pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("vgg16", marks=pytest.mark.slow)])
def test_zoo_forward_graphs_give_the_module_rule_taps(name: str) -> None:
    from onnx_sise_export import build_zoo_model
    from onnx_sise_export import find_taps as module_taps
    from onnx_sise_export.pipeline import _example_image, _forward_onnx

    model, entry = build_zoo_model(name)
    model.eval()
    image = _example_image(entry.input)
    proto, by_module_rule = _forward_onnx(model, module_taps(model, image), image)
    graph = normalise(lifted(inlined(proto)), {proto.graph.input[0].name: image.numpy()})
    assert [t.tensor for t in find_taps(graph, proto.graph.input[0].name)] == by_module_rule


def _conv(name: str, x: str, out: str, c_in: int, c_out: int, stride: tuple[int, int], inits: list, k: int = 3) -> object:
    w = np.random.default_rng(len(inits)).normal(0, 0.3, (c_out, c_in, k, k)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, f"{name}_w"))
    return helper.make_node("Conv", [x, f"{name}_w"], [out], strides=list(stride), pads=[k // 2] * 4, name=name)


def test_squeeze_excitation_gates_do_not_end_blocks_and_one_axis_downsampling_does() -> None:
    inits: list = []
    nodes = [_conv("c1", "image", "a", 3, 8, (2, 1), inits), helper.make_node("Relu", ["a"], ["r1"]),
             # squeeze-and-excitation on r1: global pool, 1x1 convs, sigmoid, multiply back
             helper.make_node("GlobalAveragePool", ["r1"], ["s"]), _conv("se1", "s", "s1", 8, 2, (1, 1), inits, k=1),
             helper.make_node("Relu", ["s1"], ["s2"]), _conv("se2", "s2", "s3", 2, 8, (1, 1), inits, k=1),
             helper.make_node("Sigmoid", ["s3"], ["gate"]), helper.make_node("Mul", ["r1", "gate"], ["g1"]),
             _conv("c2", "g1", "b", 8, 16, (2, 1), inits), helper.make_node("Relu", ["b"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]
    inits.append(numpy_helper.from_array(np.ones((16, 3), np.float32), "fc"))
    nodes.append(helper.make_node("MatMul", ["f", "fc"], ["logits"]))
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 48])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    static = normalise(model, {"image": np.random.default_rng(0).normal(size=(1, 3, 16, 48)).astype(np.float32)})
    taps = find_taps(static, "image")
    assert [(t.tensor, t.nchw_shape(static)) for t in taps] == [("g1", (1, 8, 8, 48)), ("r2", (1, 16, 4, 48))]
