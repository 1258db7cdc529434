"""SIGCAM / AOP: the base mask of eq. 4-5 by hand, the regularisers of eq. 6 against torch
autograd, and the I-GOS optimiser on EfficientNet-Lite0 with a real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnx_sise import Explainer, OptionError
from onnx_sise.images.blur import blurred
from onnx_sise.methods.igos import IgosSettings, l1_term, optimise_mask, tv_term
from onnx_sise.methods.sigcam import MAIN_BLUR, base_mask
from onnx_sise.model.session import MaskGradient


def test_base_mask_filters_below_theta_and_scales_by_lambda() -> None:
    cam = np.array([[0.0, 2.0], [8.0, 10.0]], np.float32)  # min-max: 0, 0.2, 0.8, 1.0
    mask = base_mask(cam, theta=0.7, lam=0.15, mask_size=2)  # same size: no resampling
    np.testing.assert_allclose(mask, [[1.0, 1.0], [1 - 0.15 * 0.8, 1 - 0.15]], rtol=1e-6)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_regulariser_gradients_match_autograd(beta: float) -> None:
    mask = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    mask[3, 4] = 1.0
    m = torch.from_numpy(mask.astype(np.float64)).requires_grad_(True)
    l1 = torch.mean(torch.abs(1 - m))
    tv = torch.mean(torch.abs(m[:-1, :] - m[1:, :]) ** beta) + torch.mean(torch.abs(m[:, :-1] - m[:, 1:]) ** beta)
    (l1 + 20 * tv).backward()
    (a, ga), (b, gb) = l1_term(mask), tv_term(mask, beta)
    assert a == pytest.approx(l1.item()) and b == pytest.approx(tv.item())
    np.testing.assert_allclose(ga + 20 * gb, m.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_igos_lowers_its_loss_and_is_deterministic(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "chelsea.png")
    baseline = blurred(x, "NCHW", *MAIN_BLUR)
    onehot = np.zeros(1000, np.float32)
    onehot[285] = 1.0
    settings = IgosSettings(iterations=3, integration_steps=10, warmup=0)

    def score(inputs: np.ndarray) -> np.ndarray:
        return explainer.model.batch_scores(inputs, [285])[:, 0]

    runs = [optimise_mask(np.ones((28, 28), np.float32), x, (baseline, baseline), "NCHW",
                          MaskGradient(explainer.model), onehot, score, settings,
                          np.float32(0.1), np.random.default_rng(5)) for _ in range(2)]
    (mask, trace), (again, _) = runs
    np.testing.assert_array_equal(mask, again)
    assert mask.min() >= 0 and mask.max() <= 1 and mask.min() < 0.99
    assert trace.gradient_rows == 30
    steps = np.array(trace.steps)
    assert (steps > 1e-5).any()
    # an accepted Armijo step lowers the loss: L(M_k+1) <= L(M_k) - 1e-4 t ||d||^2
    for k in range(len(trace.losses) - 1):
        if steps[k] > 1e-5:
            assert trace.losses[k + 1] < trace.losses[k]


def test_sigcam_on_a_real_photo(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path)
    result = explainer.explain(photos / "coffee.png", method="sigcam", sigcam_iterations=2, sigcam_warmup=1,
                               sigcam_steps=5)
    assert result.target == 967 and result.saliency.shape == (400, 600)
    assert result.details["base"] == "wgradcam" and result.block_maps["mask"].shape == (28, 28)
    assert result.masks_used["integrated_gradient"] == 10
    assert result.saliency.max() > 0.99
    # the deleted region starts from WGradCAM's top region: the cup
    y, x = np.unravel_index(np.argmax(result.saliency), result.saliency.shape)
    assert 20 <= y < 250 and 145 <= x < 430
    with pytest.raises(OptionError, match="sigcam_base"):
        explainer.explain(photos / "coffee.png", method="sigcam", sigcam_base="rise")
    with pytest.raises(OptionError, match="sigcam_theta"):
        explainer.explain(photos / "coffee.png", method="sigcam", sigcam_theta=2.0)
