"""Grad-CAM, Grad-CAM++ and WGradCAM from the gradient sub-graph against an eager-PyTorch
computation of their formulas (AOP eq. 1-4, Grad-CAM++ eq. 19) on EfficientNet-Lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference
import torch

from onnx_sise import Explainer, OptionError


def _torch_cams(model: torch.nn.Module, module: str, x: np.ndarray, target: int) -> dict[str, np.ndarray]:
    kept: list[torch.Tensor] = []
    hook = dict(model.named_modules())[module].register_forward_pre_hook(lambda m, args: kept.append(args[0]))
    try:
        logits = model(torch.from_numpy(x[None]).requires_grad_(True))
        kept[0].retain_grad()
        logits[0, target].backward()
    finally:
        hook.remove()
    a, g = kept[0].detach()[0].double(), kept[0].grad[0].double()
    gradcam_w = g.mean(dim=(1, 2))
    wgradcam_w = (g * a).mean(dim=(1, 2))
    g2, g3 = g ** 2, g ** 3
    denominator = 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g3
    alpha = torch.where((g != 0) & (denominator != 0), g2 / denominator, torch.zeros_like(g))
    plusplus_w = (alpha * torch.relu(g)).sum(dim=(1, 2))
    return {name: torch.relu((w[:, None, None] * a).sum(0)).numpy()
            for name, w in (("gradcam", gradcam_w), ("wgradcam", wgradcam_w), ("gradcam++", plusplus_w))}


@pytest.mark.parametrize("layer,module", [(None, "_avg_pooling"), ("block3", "_blocks.11")])
def test_cams_equal_eager_pytorch_before_upsampling(lite0_path: Path, lite0_torch: torch.nn.Module, photos: Path,
                                                    layer: str | None, module: str) -> None:
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "chelsea.png")
    expected = _torch_cams(lite0_torch, module, x, 285)
    for method in ("gradcam", "gradcam++", "wgradcam"):
        result = explainer.explain(photos / "chelsea.png", target=285, method=method, layer=layer)
        assert result.passes == 0 and result.saliency.shape == (300, 451)
        (ours,) = result.block_maps.values()
        assert ours.shape == expected[method].shape
        assert reference.pearson(ours, expected[method]) >= 0.999, method


def test_unknown_layer_is_refused(lite0_path: Path, photos: Path) -> None:
    with pytest.raises(OptionError, match="block9"):
        Explainer(lite0_path).explain(photos / "coffee.png", method="gradcam", layer="block9")
