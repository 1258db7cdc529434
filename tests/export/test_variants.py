"""fp16 and int8 variants of the masked-pass sub-graph: they load beside the float32
explainable ONNX, score like it, and give maps that correlate with its maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import reference
from onnx import TensorProto, helper, numpy_helper

import onnx_sise
from onnx_sise.errors import ExportError, ModelError
from onnx_sise.model.session import VARIANT_KEY
from onnx_sise_export import calibration_batches, layer_sensitivity, write_scoring_variant


@pytest.mark.parametrize("precision,score_atol,min_r", [("fp16", 5e-3, 0.99), ("int8", 0.1, 0.95)])
def test_variant_scores_and_maps_follow_float32(lite0_path: Path, photos: Path, tmp_path: Path, precision: str,
                                                score_atol: float, min_r: float) -> None:
    fp32 = onnx_sise.Explainer(lite0_path, threads=2)
    calibration = calibration_batches(fp32, [photos / n for n in ("chelsea.png", "astronaut.png", "rocket.jpg")])
    variant_path = write_scoring_variant(lite0_path, tmp_path / f"lite0.{precision}.onnx", precision, calibration)
    variant = onnx_sise.Explainer(lite0_path, threads=2, scoring_model=variant_path)
    assert variant.model.scoring_precision == precision
    x, _ = fp32.preprocess(photos / "coffee.png")
    masks = np.random.default_rng(1).uniform(size=(6, *x.shape[1:])).astype(np.float32)
    batch = x[None] * masks[:, None]
    np.testing.assert_allclose(variant.model.batch_scores(batch, [967, 504]), fp32.model.batch_scores(batch, [967, 504]),
                               atol=score_atol)
    expected = fp32.explain(photos / "coffee.png", target=967)
    actual = variant.explain(photos / "coffee.png", target=967)
    assert actual.passes == expected.passes
    assert reference.pearson(actual.saliency, expected.saliency) >= min_r


def test_variants_are_checked(lite0_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a scoring variant"):
        onnx_sise.Explainer(lite0_path, scoring_model=lite0_path)
    with pytest.raises(ExportError, match="calibration"):
        write_scoring_variant(lite0_path, tmp_path / "x.onnx", "int8")
    with pytest.raises(ExportError, match="precision must be"):
        write_scoring_variant(lite0_path, tmp_path / "x.onnx", "int4")
    for bad in (-1, 1.5, True):
        with pytest.raises(ExportError, match="float_layers must be"):
            write_scoring_variant(lite0_path, tmp_path / "x.onnx", "int8", [np.zeros((1, 3, 224, 224), np.float32)],
                                  float_layers=bad)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_int8_map_keeps_float32_map_on_photos_it_was_not_calibrated_on(lite0_path: Path, photos: Path,
                                                                        tmp_path: Path) -> None:
    """The default int8 variant (first convolutions in float) keeps SISE's map, both fusion
    gates, r >= 0.95 with float32 on two photos outside its calibration set."""
    fp32 = onnx_sise.Explainer(lite0_path, threads=2)
    calibration = calibration_batches(fp32, [photos / n for n in ("chelsea.png", "astronaut.png", "rocket.jpg")])
    variant = onnx_sise.Explainer(lite0_path, threads=2, scoring_model=write_scoring_variant(
        lite0_path, tmp_path / "lite0.int8.onnx", "int8", calibration))
    for name, target in (("coffee.png", 967), ("motorcycle_left.png", 665)):
        for fusion in ("hard", "soft"):
            expected = fp32.explain(photos / name, target, "sise", fusion=fusion)
            assert reference.pearson(variant.explain(photos / name, target, "sise", fusion=fusion).saliency,
                                     expected.saliency) >= 0.95, (name, fusion)


def test_int8_metadata_lists_the_float_layers(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    fp32 = onnx_sise.Explainer(lite0_path, threads=2)
    path = write_scoring_variant(lite0_path, tmp_path / "v.onnx", "int8",
                                 calibration_batches(fp32, [photos / "chelsea.png"], masks_per_photo=2), float_layers=3)
    model = onnx.load(str(path))
    floats = json.loads({p.key: p.value for p in model.metadata_props}[VARIANT_KEY])["float_nodes"]
    constants = {t.name for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    float_convs = [n.name for n in convs if n.input[1] in constants]  # a quantised one reads DequantizeLinear
    assert float_convs == [n.name for n in convs[:3]]
    assert set(float_convs) <= set(floats)
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    assert gemms and set(gemms) <= set(floats)
    assert not {n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")} & set(floats)


def _conv(name: str, weight: np.ndarray, x: str, y: str) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    node = helper.make_node("Conv", [x, f"{name}.w"], [y], name=name, pads=[1, 1, 1, 1])
    return node, numpy_helper.from_array(weight.astype(np.float32), f"{name}.w")


def test_sensitivity_ranks_first_the_layer_whose_input_range_hides_its_signal() -> None:
    """Three convolutions; the first writes a huge channel beside a tiny one, and the second
    reads only the tiny one: with one uint8 range per tensor for the huge channel, the
    second's input loses the signal, so it is the most sensitive layer, by far."""
    rng = np.random.default_rng(0)
    w1 = np.zeros((2, 3, 3, 3))
    w1[0, :, 1, 1], w1[1] = 1000.0, rng.normal(size=(3, 3, 3)) * 0.01
    w2 = np.zeros((4, 2, 3, 3))
    w2[:, 1] = rng.normal(size=(4, 3, 3)) * 50
    w3 = rng.normal(size=(5, 4, 3, 3))
    nodes, weights = zip(_conv("first", w1, "x", "a"), _conv("second", w2, "r", "b"), _conv("third", w3, "s", "c"))
    graph = helper.make_graph(
        [nodes[0], helper.make_node("Relu", ["a"], ["r"], name="relu1"), nodes[1],
         helper.make_node("Relu", ["b"], ["s"], name="relu2"), nodes[2],
         helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
         helper.make_node("Flatten", ["p"], ["scores"], name="flat")],
        "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 5])], list(weights))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    masks = rng.uniform(size=(8, 1, 8, 8))
    batches = [(rng.uniform(size=(1, 3, 8, 8)) * masks).astype(np.float32) for _ in range(3)]
    ranking = layer_sensitivity(model, batches)
    assert [name for name, _ in ranking][0] == "second"
    assert {name for name, _ in ranking} == {"first", "second", "third"}
    assert ranking[0][1] > 0.5 > 5 * ranking[1][1]
