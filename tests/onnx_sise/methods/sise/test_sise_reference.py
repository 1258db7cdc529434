"""Our SISE (onnxruntime + compiled core) against an eager-PyTorch SISE of the same
formulas on the real EfficientNet-Lite0 and real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference
import torch
from torch_reference import LITE0_TAP_MODULES, block_inputs_and_gradients, sise_block_map

from onnx_sise import Explainer
from onnx_sise.methods.sise.fusion import DEFAULT_GATE


@pytest.mark.parametrize("photo,target", [("coffee.png", 967), ("chelsea.png", 285)])
def test_block_maps_match_eager_pytorch(lite0_path: Path, lite0_torch: torch.nn.Module, photos: Path,
                                        photo: str, target: int) -> None:
    explainer = Explainer(lite0_path, batch_size=16)
    result = explainer.explain(photos / photo)
    assert result.target == target
    x, _ = explainer.preprocess(photos / photo)
    _, activations, gradients = block_inputs_and_gradients(lite0_torch, LITE0_TAP_MODULES, x, target)
    expected_maps = []
    for (name, ours), a, g in zip(result.block_maps.items(), activations, gradients):
        expected, count = sise_block_map(lite0_torch, x, a, g, target)
        expected_maps.append(expected)
        assert abs(result.masks_used[name] - count) <= max(1, count // 100), name
        assert reference.pearson(ours, expected) >= 0.99, name
    fused = reference.fuse_cascade(np.stack(expected_maps).astype(np.float32), gate=DEFAULT_GATE)
    ours_fused = reference.upsample_bilinear(result.saliency[None], *fused.shape)[0]
    assert reference.pearson(ours_fused, fused) >= 0.9
