"""Every gradient rule against float64 central differences on a small random graph
(onnx's reference evaluator), and the same gradient graph in onnxruntime float32."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradient, objective_model
from onnx import helper, numpy_helper

from onnx_sise.errors import ExportError

RNG = np.random.default_rng(0)


def _normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def _node(op: str, inputs: list[str], **attrs: object) -> object:
    return helper.make_node(op, inputs, ["y"], **attrs)


X4 = _normal(1, 4, 9, 9)
X4_EVEN = _normal(1, 4, 8, 8)
W = _normal(6, 4, 3, 3)
W_DEPTH = _normal(4, 1, 3, 3)
W_GROUP = _normal(6, 2, 3, 3)
X2 = _normal(2, 6)


def _pad_value(v: float) -> np.ndarray:
    return np.array(v, np.float32)


# name: (nodes, inputs, initializers, output shape, opset)
CASES: dict[str, tuple] = {
    "conv_stride2_pads": ([_node("Conv", ["x", "w"], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": X4}, {"w": W}, None, 17),
    "conv_asymmetric_pads_dilation": ([_node("Conv", ["x", "w"], pads=[0, 1, 2, 0], dilations=[2, 1])],
                                      {"x": X4}, {"w": W}, None, 17),
    "conv_same_upper_stride2": ([_node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], {"x": X4_EVEN},
                                {"w": W}, None, 17),
    "conv_same_lower_stride2": ([_node("Conv", ["x", "w"], auto_pad="SAME_LOWER", strides=[2, 2])], {"x": X4},
                                {"w": W}, None, 17),
    "conv_valid_stride3_unread_rows": ([_node("Conv", ["x", "w"], auto_pad="VALID", strides=[3, 3])], {"x": X4_EVEN},
                                       {"w": W}, None, 17),
    "conv_1x1_stride4": ([_node("Conv", ["x", "w"], strides=[4, 4])], {"x": _normal(1, 4, 10, 10)},
                         {"w": _normal(6, 4, 1, 1)}, None, 17),
    "conv_depthwise_bias": ([_node("Conv", ["x", "w", "b"], group=4, pads=[1, 1, 1, 1], strides=[2, 2])], {"x": X4},
                            {"w": W_DEPTH, "b": _normal(4)}, None, 17),
    "conv_groups": ([_node("Conv", ["x", "w"], group=2, pads=[1, 1, 1, 1])], {"x": X4}, {"w": W_GROUP}, None, 17),
    "conv1d": ([_node("Conv", ["x", "w"], strides=[2], pads=[1, 1])], {"x": _normal(1, 4, 11)}, {"w": _normal(3, 4, 3)},
               None, 17),
    "conv_transpose": ([_node("ConvTranspose", ["x", "w"], strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1])],
                       {"x": X4}, {"w": _normal(4, 3, 3, 3)}, None, 17),
    "conv_transpose_groups_dilated": ([_node("ConvTranspose", ["x", "w"], group=2, dilations=[2, 1], strides=[3, 1])],
                                      {"x": X4}, {"w": _normal(4, 2, 2, 3)}, None, 17),
    "relu": ([_node("Relu", ["x"])], {"x": X4}, {}, None, 17),
    "leaky_relu": ([_node("LeakyRelu", ["x"], alpha=0.2)], {"x": X4}, {}, None, 17),
    "prelu": ([_node("PRelu", ["x", "s"])], {"x": X4}, {"s": _normal(4, 1, 1)}, None, 17),
    "clip_relu6": ([_node("Clip", ["x", "lo", "hi"])], {"x": X4 * 4}, {"lo": _pad_value(0), "hi": _pad_value(6)}, None, 17),
    "clip_opset9_attrs": ([_node("Clip", ["x"], min=-0.5, max=0.7)], {"x": X4}, {}, None, 9),
    "sigmoid": ([_node("Sigmoid", ["x"])], {"x": X4}, {}, None, 17),
    "hard_sigmoid": ([_node("HardSigmoid", ["x"], alpha=0.3, beta=0.4)], {"x": X4 * 3}, {}, None, 17),
    "hard_swish": ([_node("HardSwish", ["x"])], {"x": X4 * 4}, {}, None, 17),
    "tanh": ([_node("Tanh", ["x"])], {"x": X4}, {}, None, 17),
    "elu": ([_node("Elu", ["x"], alpha=0.7)], {"x": X4}, {}, None, 17),
    "selu": ([_node("Selu", ["x"])], {"x": X4}, {}, None, 17),
    "celu": ([_node("Celu", ["x"], alpha=1.5)], {"x": X4}, {}, None, 17),
    "softplus": ([_node("Softplus", ["x"])], {"x": X4}, {}, None, 17),
    "softsign": ([_node("Softsign", ["x"])], {"x": X4}, {}, None, 17),
    "erf": ([_node("Erf", ["x"])], {"x": X4}, {}, None, 17),
    "gelu": ([_node("Gelu", ["x"])], {"x": X4}, {}, None, 20),
    "gelu_tanh": ([_node("Gelu", ["x"], approximate="tanh")], {"x": X4}, {}, None, 20),
    "mish": ([_node("Mish", ["x"])], {"x": X4}, {}, None, 18),
    "exp_log_sqrt": ([helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Sqrt", ["e"], ["s"]),
                      helper.make_node("Log", ["s"], ["r"]), _node("Reciprocal", ["r"])],
                     {"x": np.abs(X4) + 0.5}, {}, None, 17),
    "neg_abs": ([helper.make_node("Neg", ["x"], ["n"]), _node("Abs", ["n"])], {"x": X4}, {}, None, 17),
    "pow_constant": ([_node("Pow", ["x", "p"])], {"x": np.abs(X4) + 0.5}, {"p": _pad_value(1.7)}, None, 17),
    "pow_square": ([_node("Pow", ["x", "p"])], {"x": X4}, {"p": _pad_value(2.0)}, None, 17),
    "add_broadcast": ([_node("Add", ["x", "b"])], {"x": X4}, {"b": _normal(4, 1, 1)}, None, 17),
    "sub_both_sides": ([helper.make_node("Relu", ["x"], ["r"]), _node("Sub", ["x", "r"])], {"x": X4}, {}, None, 17),
    "mul_self_broadcast": ([helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3]), _node("Mul", ["x", "m"])],
                           {"x": X4}, {}, None, 17),
    "div_both": ([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Add", ["s", "one"], ["d"]),
                  _node("Div", ["x", "d"])], {"x": X4}, {"one": _pad_value(1.0)}, None, 17),
    "sum_mean_max_min": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sum", ["x", "r", "c"], ["s"]),
                          helper.make_node("Mean", ["s", "x"], ["m"]), helper.make_node("Max", ["m", "c"], ["mx"]),
                          _node("Min", ["mx", "x"])], {"x": X4}, {"c": _normal(1, 9)}, None, 17),
    "where": ([helper.make_node("Greater", ["x", "c"], ["g"]), _node("Where", ["g", "x", "c"])], {"x": X4},
              {"c": _normal(9)}, None, 17),
    "matmul_batched": ([_node("MatMul", ["x", "m"])], {"x": _normal(1, 4, 9, 9)}, {"m": _normal(9, 5)}, None, 17),
    "matmul_left_constant": ([_node("MatMul", ["m", "x"])], {"x": _normal(2, 9, 5)}, {"m": _normal(3, 9)}, None, 17),
    "gemm": ([_node("Gemm", ["x", "w", "b"], alpha=0.7, beta=0.3, transB=1)], {"x": X2}, {"w": _normal(5, 6),
                                                                                      "b": _normal(5)}, None, 17),
    "gemm_trans_a": ([_node("Gemm", ["x", "w"], transA=1)], {"x": _normal(6, 2)}, {"w": _normal(6, 5)}, None, 11),
    "batch_norm": ([_node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], {"x": X4},
                   {"s": _normal(4), "b": _normal(4), "m": _normal(4), "v": np.abs(_normal(4)) + 0.1}, None, 15),
    "instance_norm": ([_node("InstanceNormalization", ["x", "s", "b"])], {"x": X4}, {"s": _normal(4), "b": _normal(4)},
                      None, 17),
    "layer_norm": ([_node("LayerNormalization", ["x", "s", "b"], axis=-2)], {"x": X4}, {"s": _normal(9, 9),
                                                                                    "b": _normal(9, 9)}, None, 17),
    "softmax_axis1_opset13": ([_node("Softmax", ["x"], axis=1)], {"x": X4}, {}, None, 13),
    "softmax_opset11_last": ([_node("Softmax", ["x"], axis=1)], {"x": X2}, {}, None, 11),
    "log_softmax": ([_node("LogSoftmax", ["x"], axis=-1)], {"x": X2}, {}, None, 17),
    "reshape_allowzero": ([_node("Reshape", ["x", "s"], allowzero=1)], {"x": X4}, {"s": np.array([1, 36, 9], np.int64)},
                          None, 18),
    "flatten_transpose": ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), _node("Flatten", ["t"])],
                          {"x": X4}, {}, None, 17),
    "squeeze_unsqueeze_inputs": ([helper.make_node("Unsqueeze", ["x", "a"], ["u"]), _node("Squeeze", ["u", "a"])],
                                 {"x": X4}, {"a": np.array([0], np.int64)}, None, 13),
    "squeeze_unsqueeze_attrs": ([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]), _node("Squeeze", ["u"], axes=[0])],
                                {"x": X4}, {}, None, 11),
    "concat_split": ([helper.make_node("Concat", ["x", "x"], ["c"], axis=1),
                      helper.make_node("Split", ["c", "sp"], ["a", "b2"], axis=1), _node("Mul", ["a", "b2"])],
                     {"x": X4}, {"sp": np.array([4, 4], np.int64)}, None, 13),
    "split_one_output_used": ([helper.make_node("Split", ["x"], ["a", "b2"], axis=2, num_outputs=2), _node("Relu", ["b2"])],
                              {"x": X4_EVEN}, {}, None, 18),
    "slice_steps": ([_node("Slice", ["x", "st", "en", "ax", "sp"])], {"x": X4},
                    {"st": np.array([1, -1], np.int64), "en": np.array([8, 0], np.int64), "ax": np.array([2, 3], np.int64),
                     "sp": np.array([2, -2], np.int64)}, None, 17),
    "gather": ([_node("Gather", ["x", "i"], axis=1)], {"x": X4}, {"i": np.array([3, 0, 3], np.int64)}, None, 17),
    "pad_constant": ([_node("Pad", ["x", "p", "v"])], {"x": X4}, {"p": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64),
                                                                  "v": _pad_value(0.5)}, None, 17),
    "pad_reflect": ([_node("Pad", ["x", "p"], mode="reflect")], {"x": X4}, {"p": np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)},
                    None, 17),
    "pad_edge_axes": ([_node("Pad", ["x", "p", "", "ax"], mode="edge")], {"x": X4},
                      {"p": np.array([2, 1, 1, 2], np.int64), "ax": np.array([2, 3], np.int64)}, None, 18),
    "pad_negative": ([_node("Pad", ["x", "p"])], {"x": X4}, {"p": np.array([0, 0, -1, 2, 0, 0, 1, -2], np.int64)}, None, 17),
    "pad_opset9": ([_node("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1])], {"x": X4}, {}, None, 9),
    "expand_tile": ([helper.make_node("Expand", ["x", "s"], ["e"]), _node("Tile", ["e", "r"])],
                    {"x": _normal(1, 4, 1, 9)}, {"s": np.array([1, 4, 3, 9], np.int64),
                                                 "r": np.array([1, 1, 2, 1], np.int64)}, None, 17),
    "depth_to_space": ([_node("DepthToSpace", ["x"], blocksize=2)], {"x": X4}, {}, None, 17),
    "space_to_depth": ([_node("SpaceToDepth", ["x"], blocksize=2)], {"x": X4_EVEN}, {}, None, 17),
    "resize_nearest": ([_node("Resize", ["x", "", "s"], mode="nearest")], {"x": X4},
                       {"s": np.array([1, 1, 2, 1.5], np.float32)}, None, 17),
    "resize_linear": ([_node("Resize", ["x", "", "s"], mode="linear")], {"x": X4},
                      {"s": np.array([1, 1, 2, 0.5], np.float32)}, None, 17),
    "resize_cubic_sizes": ([_node("Resize", ["x", "", "", "z"], mode="cubic")], {"x": X4},
                           {"z": np.array([1, 4, 5, 13], np.int64)}, None, 17),
    "max_pool": ([_node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": X4}, {}, None, 17),
    "max_pool_asymmetric_same": ([_node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])],
                                 {"x": X4}, {}, None, 17),
    "max_pool_ceil_dilated": ([_node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, dilations=[2, 1])],
                              {"x": X4}, {}, None, 17),
    "max_pool_overlapping": ([_node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[1, 1])], {"x": X4}, {}, None, 17),
    "average_pool_include_pad": ([_node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                        count_include_pad=1)], {"x": X4}, {}, None, 17),
    "average_pool_exclude_pad": ([_node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
                                 {"x": X4}, {}, None, 17),
    "average_pool_ceil": ([_node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], {"x": X4}, {},
                          None, 17),
    "average_pool_same_opset9": ([_node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
                                 {"x": X4_EVEN}, {}, None, 9),
    "global_pools": ([helper.make_node("GlobalAveragePool", ["x"], ["a"]), helper.make_node("GlobalMaxPool", ["x"], ["m"]),
                      _node("Add", ["a", "m"])], {"x": X4}, {}, None, 17),
    "reduce_mean_opset18": ([_node("ReduceMean", ["x", "a"], keepdims=0)], {"x": X4}, {"a": np.array([2, 3], np.int64)},
                            None, 18),
    "reduce_family": ([helper.make_node("ReduceMax", ["x"], ["a"], axes=[1]), helper.make_node("ReduceMin", ["x"], ["b"], axes=[2]),
                       helper.make_node("ReduceSumSquare", ["x"], ["c"], axes=[3]),
                       helper.make_node("ReduceL2", ["x"], ["d"], axes=[1, 2]),
                       helper.make_node("ReduceLogSumExp", ["x"], ["f"], axes=[3]),
                       helper.make_node("ReduceL1", ["x"], ["g"], axes=[3]),
                       helper.make_node("ReduceSum", ["x"], ["h"], axes=[1], keepdims=1),
                       helper.make_node("Sum", ["a", "b", "c", "d", "f", "g", "h"], ["y"])],
                      {"x": X4}, {}, None, 11),
    "identity_dropout_cast": ([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Dropout", ["i"], ["d"]),
                               helper.make_node("Cast", ["d"], ["c"], to=11), _node("Cast", ["c"], to=1)],
                              {"x": X4}, {}, None, 17),
}


def _output_shape(case: tuple) -> tuple[int, ...]:
    import onnx
    import onnxruntime as ort

    nodes, inputs, inits, _, opset = case
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info(k, 1, v.shape) for k, v in inputs.items()],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    del onnx
    return session.run(["y"], inputs)[0].shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_float64_central_differences(name: str) -> None:
    case = CASES[name]
    nodes, inputs, inits, _, opset = case
    model = objective_model(nodes, inputs, "y", _output_shape(case), inits, opset=opset)
    report = check_gradient(model, inputs, ["x"])
    assert report["x"] < 1e-5, report
    assert report["x/float32"] < 1e-4, report


def test_an_op_without_a_rule_is_refused_by_type_and_node_name() -> None:
    x = _normal(1, 4)
    model = objective_model([helper.make_node("Hardmax", ["x"], ["y"], name="the_hardmax")], {"x": x}, "y", (1, 4))
    with pytest.raises(ExportError, match="op Hardmax .*node 'the_hardmax'.* no gradient rule"):
        check_gradient(model, {"x": x}, ["x"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_kernels_compute_what_onnxruntime_computes(name: str) -> None:
    """The float64 evaluator (with its own Conv, ConvTranspose, MaxPool, Pad, ... kernels)
    against onnxruntime float32 on every case's forward graph."""
    import onnxruntime as ort

    from onnx_sise.model.preparation.float64 import evaluate

    nodes, inputs, inits, _, opset = CASES[name]
    model = objective_model(nodes, inputs, "y", _output_shape(CASES[name]), inits, opset=opset)
    model.graph.output.append(helper.make_tensor_value_info("y", 1, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (fast,) = session.run(["y"], inputs)
    (exact,) = evaluate(model, inputs, ["y"])
    np.testing.assert_allclose(exact, fast, rtol=1e-4, atol=1e-5 * float(np.abs(fast).max()))
