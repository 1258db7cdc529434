"""Block taps found by the rule of taps.find_taps, with no per-model table."""

from __future__ import annotations

import pytest
import torch

from onnx_sise.errors import ExportError
from onnx_sise_export import build_zoo_model, find_taps
from onnx_sise_export.taps import TapCapture, taps_from_names

EXPECTED = {
    "efficientnet-lite0": [(16, 112), (24, 56), (40, 28), (112, 14), (1280, 7)],
    "resnet50": [(64, 112), (256, 56), (512, 28), (1024, 14), (2048, 7)],
    "vgg16": [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14)],
}


def _shapes(model: torch.nn.Module, sites: list) -> list[tuple[int, int]]:
    capture = TapCapture(model, sites)
    with torch.no_grad(), capture.capture() as tensors:
        model(torch.randn(1, 3, 224, 224))
    return [(int(t.shape[1]), int(t.shape[2])) for t in tensors]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_taps_are_the_block_outputs(name: str) -> None:
    model, _ = build_zoo_model(name)
    sites = find_taps(model, torch.randn(1, 3, 224, 224))
    assert _shapes(model, sites) == EXPECTED[name]


def test_resnet50_taps_are_3904_maps_from_the_named_blocks() -> None:
    model, _ = build_zoo_model("resnet50")
    sites = find_taps(model, torch.randn(1, 3, 224, 224))
    assert [s.describe() for s in sites] == ["maxpool:input", "layer2:input", "layer3:input", "layer4:input",
                                             "avgpool:input"]
    assert sum(c for c, _ in _shapes(model, sites)) == 3904


def test_vgg16_taps_are_the_relus_before_each_maxpool() -> None:
    model, _ = build_zoo_model("vgg16")
    sites = find_taps(model, torch.randn(1, 3, 224, 224))
    pools = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert [s.describe() for s in sites] == [f"features.{i}:input" for i in pools]
    assert all(isinstance(model.features[i - 1], torch.nn.ReLU) for i in pools)


def test_functional_pooling_falls_back_to_the_op_input() -> None:
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(x))
            x = torch.nn.functional.max_pool2d(x, 2)
            return self.fc(x.mean((2, 3)))

    model = Plain().eval()
    sites = find_taps(model, torch.randn(1, 3, 32, 32))
    assert [s.kind for s in sites] == ["op_input", "op_input"]
    assert _shapes_for(model, sites, (1, 3, 32, 32)) == [(8, 32), (8, 16)]


def _shapes_for(model: torch.nn.Module, sites: list, shape: tuple) -> list[tuple[int, int]]:
    capture = TapCapture(model, sites)
    with torch.no_grad(), capture.capture() as tensors:
        model(torch.randn(*shape))
    return [(int(t.shape[1]), int(t.shape[2])) for t in tensors]


def test_override_by_module_names_and_unknown_names_are_refused() -> None:
    model, _ = build_zoo_model("resnet50")
    sites = taps_from_names(model, ["layer3", "layer4"])
    assert _shapes(model, sites) == [(1024, 14), (2048, 7)]
    with pytest.raises(ExportError, match="layer9"):
        taps_from_names(model, ["layer9"])


def test_model_without_downsampling_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
    with pytest.raises(ExportError, match="never lowers the spatial resolution"):
        find_taps(model.eval(), torch.randn(1, 3, 8, 8))
