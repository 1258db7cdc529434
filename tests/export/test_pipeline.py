"""Score kinds: Psi is softmax of logits, the probabilities themselves, or sigmoid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from onnx_sise.errors import ExportError
from onnx_sise.model.info import InputSpec
from onnx_sise_export import export_explainable


class _Tiny(torch.nn.Module):
    def __init__(self, head: str) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, 2, 1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, 5)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
        return torch.softmax(logits, 1) if self.head == "softmax" else logits


@pytest.mark.parametrize("head,kind,psi", [
    ("logits", "logits", lambda out: torch.softmax(out, 1)),
    ("softmax", "probabilities", lambda out: out),
    ("logits", "sigmoid", torch.sigmoid),
])
def test_scores_are_psi_of_the_declared_kind(tmp_path: Path, head: str, kind: str, psi) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = _Tiny(head).eval()
    path = tmp_path / "tiny.sise.onnx"
    info = export_explainable(model, path, model_name="tiny", input_spec=InputSpec(16, 16), output_kind=kind)
    assert info.output_kind == kind
    x = torch.randn(3, 3, 16, 16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["batch_scores"], {"masked_batch": x.numpy()})
    with torch.no_grad():
        expected = psi(model(x)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)
    weights = np.zeros((1, 5), np.float32)
    weights[0, 2] = 1
    (gradient,) = session.run(["gradient/block0"], {"image": x[:1].numpy(), "target_weights": weights,
                                               "gradient/enabled": np.array(True)})
    features = torch.relu(model.conv(x[:1])).requires_grad_(True)
    logits = model.fc(torch.flatten(model.pool(features), 1))
    out = psi(torch.softmax(logits, 1) if head == "softmax" else logits)
    out[0, 2].backward()
    np.testing.assert_allclose(gradient, features.grad.numpy(), rtol=1e-4, atol=1e-8)


def test_unknown_output_kind_and_non_classifier_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="output kind"):
        export_explainable(_Tiny("logits").eval(), tmp_path / "a.onnx", model_name="t", input_spec=InputSpec(16, 16),
                           output_kind="softplus")
    segmenter = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1)).eval()
    with pytest.raises(ExportError, match="expected class scores"):
        export_explainable(segmenter, tmp_path / "b.onnx", model_name="s", input_spec=InputSpec(16, 16))
    assert not list(tmp_path.iterdir())
