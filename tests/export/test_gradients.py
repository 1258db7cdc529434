"""The gradient sub-graph in onnxruntime against PyTorch autograd on the eager model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch_reference import LITE0_TAP_MODULES, block_inputs_and_gradients

from onnx_sise import Explainer
from onnx_sise.errors import ExportError
from onnx_sise.model.info import InputSpec
from onnx_sise_export import (
    ALPHA_TOLERANCE,
    GRADIENT_L2_TOLERANCE,
    SCORE_TOLERANCE,
    build_zoo_model,
    export_explainable,
    find_taps,
)
from onnx_sise_export.autograd import explanation_function
from onnx_sise_export.pipeline import _against_float64


def _run_gradient_graph(path: Path, x: np.ndarray, target: int, num_taps: int):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    weights = np.zeros((1, 1000), np.float32)
    weights[0, target] = 1
    names = ["scores"] + [f"activation/block{i}" for i in range(num_taps)] + [f"gradient/block{i}" for i in range(num_taps)]
    out = session.run(names, {"image": x[None], "target_weights": weights, "gradient/enabled": np.array(True)})
    return out[0][0], [a[0] for a in out[1:1 + num_taps]], [g[0] for g in out[1 + num_taps:]]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_lite0_gradients_match_autograd_on_a_real_photo(lite0_path: Path, lite0_torch: torch.nn.Module,
                                                         photos: Path) -> None:
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "coffee.png")
    probs, acts, grads = block_inputs_and_gradients(lite0_torch, LITE0_TAP_MODULES, x, 967)
    acts, grads = [a.numpy() for a in acts], [g.numpy() for g in grads]
    ort_probs, ort_acts, ort_grads = _run_gradient_graph(lite0_path, x, 967, 5)
    assert int(np.argmax(ort_probs)) == 967 and ort_probs[967] > 0.85
    assert _rel(ort_probs, probs) < SCORE_TOLERANCE
    for a, ea, g, eg in zip(ort_acts, acts, ort_grads, grads):
        assert a.shape == ea.shape
        assert _rel(a, ea) < SCORE_TOLERANCE
        assert np.linalg.norm(g - eg) / np.linalg.norm(eg) < GRADIENT_L2_TOLERANCE
        assert _rel(g.sum((1, 2)), eg.sum((1, 2))) < ALPHA_TOLERANCE


def test_lite0_export_records_its_verification(lite0_path: Path) -> None:
    info = Explainer(lite0_path).info
    assert [(t.channels, t.height) for t in info.taps] == [(16, 112), (24, 56), (40, 28), (112, 14), (1280, 7)]
    assert [t.reduction for t in info.taps] == [2, 4, 8, 16, 32]
    assert info.labels[967] == "espresso" and info.output_kind == "logits"
    assert info.verification["gradients"] < GRADIENT_L2_TOLERANCE
    assert info.verification["alpha"] < ALPHA_TOLERANCE


class _MiniResNet(torch.nn.Module):
    """Stem, max-pool, a strided residual block with a shortcut, global pooling: the
    backward ops of ResNet-50 at a size that exports in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, 2, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, 1, 1))
        self.shortcut = torch.nn.Conv2d(8, 16, 1, 2)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = torch.relu(self.body(x) + self.shortcut(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_maxpool_and_residual_gradients_match_autograd(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = _MiniResNet().eval()
    spec = InputSpec(height=64, width=64)
    info = export_explainable(model, tmp_path / "mini.sise.onnx", model_name="mini", input_spec=spec)
    assert [(t.source, t.channels, t.height) for t in info.taps] == [
        ("maxpool:input", 8, 32), ("body:input", 8, 16), ("pool:input", 16, 8)]
    x = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    target = 4
    session = ort.InferenceSession(str(tmp_path / "mini.sise.onnx"), providers=["CPUExecutionProvider"])
    weights = np.zeros((1, 10), np.float32)
    weights[0, target] = 1
    grads = session.run([t.gradient_output for t in info.taps], {"image": x[None], "target_weights": weights, "gradient/enabled": np.array(True)})
    image = torch.from_numpy(x[None])
    stem = model.stem(image).requires_grad_(True)
    pooled = model.maxpool(stem)
    pooled.retain_grad()
    block = torch.relu(model.body(pooled) + model.shortcut(pooled))
    block.retain_grad()
    torch.softmax(model.fc(torch.flatten(model.pool(block), 1)), 1)[0, target].backward()
    for ours, expected in zip(grads, [stem.grad, pooled.grad, block.grad]):
        np.testing.assert_allclose(ours[0], expected.numpy()[0], rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


def test_transposed_convolution_gradients_match_autograd(tmp_path: Path) -> None:
    """ConvTranspose, which the torch-traced export refused, differentiates in ONNX."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, 1, 1), torch.nn.MaxPool2d(2), torch.nn.ConvTranspose2d(4, 4, 2, 2),
        torch.nn.Conv2d(4, 4, 3, 2, 1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ).eval()
    info = export_explainable(model, tmp_path / "deconv.sise.onnx", model_name="deconv", input_spec=InputSpec(32, 32))
    assert info.verification["gradients"] < GRADIENT_L2_TOLERANCE and info.verification["alpha"] < ALPHA_TOLERANCE


def test_an_op_without_a_rule_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    class CumulativeHead(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.cumsum(1)

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3), CumulativeHead()).eval()
    with pytest.raises(ExportError, match=r"op CumSum \(node '.*'\) has no gradient rule"):
        export_explainable(model, tmp_path / "bad.sise.onnx", model_name="bad", input_spec=InputSpec(32, 32))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_resnet50_export_verifies_against_autograd(tmp_path: Path) -> None:
    model, entry = build_zoo_model("resnet50")
    info = export_explainable(model, tmp_path / "r50.sise.onnx", model_name="resnet50", input_spec=entry.input)
    assert sum(t.channels for t in info.taps) == 3904
    assert info.verification["gradients"] < GRADIENT_L2_TOLERANCE
    assert info.verification["alpha"] < ALPHA_TOLERANCE


@pytest.mark.slow
def test_vgg16_export_passes_where_torch_float32_misses_the_fixed_tolerance(tmp_path: Path) -> None:
    model, entry = build_zoo_model("vgg16")
    info = export_explainable(model, tmp_path / "vgg16.sise.onnx", model_name="vgg16", input_spec=entry.input)
    report = info.verification
    # torch's own float32 autograd is further from float64 than the fixed alpha tolerance:
    assert report["torch_float32_alpha"] > ALPHA_TOLERANCE
    assert report["float64_within_float32"] <= 1.0
    assert report["float64_alpha"] <= 2 * report["torch_float32_alpha"]


def test_float64_check_refuses_gradients_two_percent_off() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 1, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, 1, 1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    ).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    image = torch.randn(1, 3, 32, 32)
    sites = find_taps(model, image)
    weights = torch.zeros(1, 5)
    weights[0, 3] = 1.0
    outputs = explanation_function(model, sites, "logits")(image.clone().requires_grad_(True), weights, weights * 0.01)
    float32 = [t.detach().numpy() for t in outputs[2 + len(sites):]]
    exact = _against_float64(model, sites, "logits", image, (weights, weights * 0.01), float32, float32)
    assert exact["float64_within_float32"] <= 1.0
    off = _against_float64(model, sites, "logits", image, (weights, weights * 0.01), [g * 1.02 for g in float32],
                           float32)
    assert off["float64_within_float32"] > 1.0


@pytest.mark.slow
def test_lite0_maps_equal_the_torch_traced_export(lite0_path: Path, tmp_path: Path, photos: Path) -> None:
    """The ONNX-native path gives the maps of the torch-traced exporter it replaced
    (tests/previous_export.py: that exporter, read from git history, run in this test)."""
    from previous_export import BASELINE_COMMIT, previous_export

    old_path = previous_export("efficientnet-lite0", tmp_path / "old.sise.onnx", tmp_path / "baseline")
    if old_path is None:
        pytest.skip(f"commit {BASELINE_COMMIT} is not in this clone's history (a shallow clone)")
    new, old = Explainer(lite0_path), Explainer(old_path)
    assert [(t.source, t.channels, t.height) for t in new.info.taps] == \
        [(t.source, t.channels, t.height) for t in old.info.taps]
    for photo in ("coffee.png", "chelsea.png"):
        for method in ("sise", "gradcam"):
            ours, theirs = new.explain(photos / photo, method=method), old.explain(photos / photo, method=method)
            for block, values in ours.block_maps.items():
                r = np.corrcoef(values.ravel(), theirs.block_maps[block].ravel())[0, 1]
                assert r >= 0.999, (photo, method, block, r)
