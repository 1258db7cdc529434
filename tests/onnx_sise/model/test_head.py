"""The head of a tap (model/head.py): the rest of the network after the tap, cut from the
explainable ONNX. On EfficientNet-Lite0 it gives, from every tap's activations of real
photos, the logits eager PyTorch gives for the photo; a tap bypassed by a skip
connection has no head and is refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx_sise import Explainer, OptionError
from onnx_sise.model.head import head_of
from onnx_sise.model.preparation import prepare_onnx


@pytest.mark.parametrize("photo", ["coffee.png", "chelsea.png"])
def test_head_of_every_tap_gives_the_logits_of_pytorch(lite0_path: Path, lite0_torch: torch.nn.Module,
                                                       photos: Path, photo: str) -> None:
    explainer = Explainer(lite0_path)
    model = explainer.model
    x, _ = explainer.preprocess(photos / photo)
    with torch.no_grad():
        expected = lite0_torch(torch.from_numpy(x[None]))[0].double().numpy()
    _, activations = model.logits_and_activations(x)
    for index, tap in enumerate(model.info.taps):
        batch = np.stack([activations[index], np.zeros_like(activations[index])])  # the batch axis is free
        logits, scores = head_of(model, index)(batch)
        assert logits.shape == scores.shape == (2, 1000), tap.name
        assert np.abs(logits[0] - expected).max() <= 1e-3 * np.abs(expected).max(), tap.name
        assert np.allclose(scores[0], model.scores(x), atol=1e-5), tap.name
        assert head_of(model, index) is head_of(model, index)  # cut and opened once


def _skip_model(path: Path) -> Path:
    """image -> a = Conv -> b = Relu -> c = Conv -> d = a + c -> Relu -> GAP -> Gemm: the skip
    from a to d bypasses b."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name) for name, shape in
               (("w1", (4, 3, 3, 3)), ("w2", (4, 4, 3, 3)), ("wf", (5, 4)), ("bf", (5,)))]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "c"], ["d"]),
             helper.make_node("Relu", ["d"], ["e"]),
             helper.make_node("GlobalAveragePool", ["e"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_tap_bypassed_by_a_skip_connection_has_no_head(tmp_path: Path) -> None:
    prepare_onnx(_skip_model(tmp_path / "skip.onnx"), tmp_path / "skip.sise.onnx", taps=("b", "e"))
    explainer = Explainer(tmp_path / "skip.sise.onnx")
    with pytest.raises(OptionError, match="tap block0 has no head: .*skip connection") as refused:
        head_of(explainer.model, 0)
    assert "\n" not in str(refused.value)
    image = np.random.default_rng(1).normal(size=(3, 8, 8)).astype(np.float32)
    logits, activations = explainer.model.logits_and_activations(image)
    ours, _ = head_of(explainer.model, 1)(activations[1][None])
    assert np.allclose(ours[0], logits, atol=1e-5)
    with pytest.raises(OptionError, match="block0 has no head"):
        explainer.explain(np.zeros((8, 8, 3), np.uint8), method="ablation-cam", layer="block0")


def test_a_head_is_kept_no_longer_than_its_model(tmp_path: Path) -> None:
    import gc
    import weakref

    from onnx_sise.model import head

    prepare_onnx(_skip_model(tmp_path / "skip.onnx"), tmp_path / "skip.sise.onnx", taps=("b", "e"))
    model = Explainer(tmp_path / "skip.sise.onnx").model
    head_of(model, 1)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None and len(head._heads) == 0
