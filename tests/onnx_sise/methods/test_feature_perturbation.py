"""Ablation-CAM and Recipro-CAM on the tap's head against the peers' own code on
EfficientNet-Lite0 and real photos: pytorch-grad-cam's AblationCAM (on the eager torch
network after the tap: it ablates the tap's output, so it sees exactly the tap tensor)
and OpenVINO XAI's white-box ReciproCAM (on the plain scoring graph of the same ONNX in
OpenVINO, its target layer the node that makes the tap tensor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import reference
import torch
from onnx import TensorProto, helper
from peers import peer

from onnx_sise import Explainer, OptionError
from onnx_sise.model.head import tap_tensor

PHOTOS = [("coffee.png", 967), ("chelsea.png", 285)]


class _AfterTap(torch.nn.Module):
    """Lite0 from the input of its global pooling (the deepest tap) to the logits, with the
    tap as a module of its own: the network's ReLU6 module also serves the stem."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.tap = torch.nn.Identity()
        self.model = model

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        pooled = self.model._avg_pooling(self.tap(activations)).flatten(1)
        return self.model._fc(self.model._dropout(pooled))


def _torch_tap(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    kept: list[torch.Tensor] = []
    hook = model._avg_pooling.register_forward_pre_hook(lambda module, args: kept.append(args[0]))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x[None]))
    finally:
        hook.remove()
    return kept[0]


@pytest.mark.parametrize("photo,target", PHOTOS)
def test_ablation_cam_equals_pytorch_grad_cam(lite0_path: Path, lite0_torch: torch.nn.Module, photos: Path,
                                              photo: str, target: int) -> None:
    grad_cam = peer("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    explainer = Explainer(lite0_path, batch_size=64)
    x, _ = explainer.preprocess(photos / photo)
    head = _AfterTap(lite0_torch).eval()
    theirs = grad_cam.AblationCAM(head, [head.tap], batch_size=64)(
        _torch_tap(lite0_torch, x), targets=[ClassifierOutputTarget(target)])[0]  # min-max scaled, 7 x 7
    result = explainer.explain(photos / photo, target=target, method="ablation-cam")
    (ours,) = result.block_maps.values()
    assert ours.shape == theirs.shape == (7, 7)
    assert reference.pearson(ours, theirs) >= 0.99
    assert result.passes == 0 and result.details["head_passes"] == 1280 + 1  # every channel, and A itself
    assert result.details["ablation_value"] == 0.0  # the tap follows a ReLU6


def _plain_scoring_graph(explainable: Path, out: Path) -> Path:
    """The scoring graph of the explainable ONNX alone: masked_batch -> batch_scores (Psi)."""
    model = onnx.load(str(explainable))
    nodes = [n for n in model.graph.node if n.op_type != "If"]
    used = {i for n in nodes for i in n.input}
    weights = [t for t in model.graph.initializer if t.name in used and t.name != "masked_batch"]
    graph = helper.make_graph(
        nodes, "plain", [helper.make_tensor_value_info("masked_batch", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("batch_scores", TensorProto.FLOAT, ["N", 1000])], weights)
    plain = helper.make_model(graph, opset_imports=list(model.opset_import))
    plain.ir_version = model.ir_version
    onnx.save(plain, str(out))
    return out


@pytest.fixture(scope="module")
def openvino_lite0(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str]:
    """Lite0's scoring graph in OpenVINO, and the name of its node that makes the deepest tap."""
    peer("openvino_xai")
    import openvino

    plain = _plain_scoring_graph(lite0_path, tmp_path_factory.mktemp("openvino") / "lite0.onnx")
    model = openvino.Core().read_model(str(plain))
    explainable = onnx.load(str(lite0_path), load_external_data=False)
    tensor, _ = tap_tensor(explainable.graph, Explainer(lite0_path).info.taps[-1], str(lite0_path))
    layer = next(op.get_friendly_name() for op in model.get_ordered_ops()
                 if any(tensor in output.get_names() for output in op.outputs()))
    return model, layer


@pytest.mark.parametrize("photo,target", PHOTOS)
def test_reciprocam_equals_openvino_xai(lite0_path: Path, openvino_lite0: tuple[object, str], photos: Path,
                                        photo: str, target: int) -> None:
    from openvino_xai.methods.white_box.recipro_cam import ReciproCAM

    model, layer = openvino_lite0
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / photo)
    theirs = ReciproCAM(model, target_layer=layer).generate_saliency_map(x[None])[0, target]  # 0..255, 7 x 7
    result = explainer.explain(photos / photo, target=target, method="reciprocam")
    (ours,) = result.block_maps.values()
    assert ours.shape == theirs.shape == (7, 7)
    assert reference.pearson(ours, theirs.astype(np.float32)) >= 0.99
    assert result.passes == 0 and result.details["head_passes"] == 49
    assert ours.min() == 0 and ours.max() == pytest.approx(1)


@pytest.mark.parametrize("method", ["ablation-cam", "reciprocam"])
def test_unknown_layer_is_refused(lite0_path: Path, photos: Path, method: str) -> None:
    with pytest.raises(OptionError, match="block9"):
        Explainer(lite0_path).explain(photos / "coffee.png", method=method, layer="block9")
