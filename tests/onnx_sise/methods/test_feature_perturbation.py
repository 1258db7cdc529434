"""Ablation-CAM and Recipro-CAM on the tap's head against the peers' own code on
EfficientNet-Lite0 and real photos: pytorch-grad-cam's AblationCAM (on the eager torch
network after the tap: it ablates the tap's output, so it sees exactly the tap tensor)
and OpenVINO XAI's white-box ReciproCAM (on the plain scoring graph of the same ONNX in
OpenVINO, its target layer the node that makes the tap tensor; conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference
import torch
from peers import peer

from onnx_sise import Explainer, OptionError

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


@pytest.mark.parametrize("photo,target", PHOTOS)
def test_reciprocam_equals_openvino_xai(lite0_path: Path, openvino_lite0: tuple, photos: Path, photo: str,
                                        target: int) -> None:
    from openvino_xai.methods.white_box.recipro_cam import ReciproCAM

    model, layer, compile_f32 = openvino_lite0
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / photo)
    recipro = ReciproCAM(model, target_layer=layer, prepare_model=False)
    recipro._model_compiled = compile_f32(recipro.prepare_model(load_model=False))  # its graph with the XAI branch
    theirs = recipro.generate_saliency_map(x[None])[0, target]  # 0..255, 7 x 7
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
