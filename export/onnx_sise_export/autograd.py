"""torch autograd references for the zoo's export check: the block outputs and
d(score . weights)/d(block outputs), and SIGCAM's mask objective (AOP eq. 6), computed
eagerly by torch. The explainable ONNX itself is differentiated in ONNX
(onnx_sise.model.preparation); these only check it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from onnx_sise.kernels import bilinear_matrix
from onnx_sise.model.info import InputSpec

from .taps import TapCapture, TapSite


def score_head(logits: torch.Tensor, output_kind: str) -> torch.Tensor:
    """Psi of the papers: softmax of logits, the probabilities themselves, or sigmoid."""
    if output_kind == "logits":
        return torch.softmax(logits, dim=-1)
    if output_kind == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def explanation_function(
    model: nn.Module, sites: Sequence[TapSite], output_kind: str
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
    """f(image, target_weights, logit_weights) -> (logits, scores, *activations, *gradients),
    where the gradients are of sum(scores * target_weights) + sum(logits * logit_weights):
    the score Psi for SISE (eq. 6 before the spatial sum), the raw class output for the
    Grad-CAM family."""
    capture = TapCapture(model, sites)

    def explain(image: torch.Tensor, target_weights: torch.Tensor, logit_weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with capture.capture() as taps:
            logits = model(image)
        scores = score_head(logits, output_kind)
        objective = (scores * target_weights).sum() + (logits * logit_weights).sum()
        gradients = torch.autograd.grad(objective, taps)
        return (logits, scores, *taps, *gradients)

    return explain


def mask_objective(model: nn.Module, spec: InputSpec, output_kind: str, mask_size: int
                   ) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """f(image, baseline, masks, noise, target_weights) -> (scores (B,), d scores / d masks (B, 1, m, m)).

    image, baseline: (1, ...) model inputs; masks: (B, 1, m, m); noise: (B, ...) model
    inputs; target_weights: (1, classes), score_b = sum_c w_c Psi_c(Phi(I, M_b))."""
    rows = torch.from_numpy(bilinear_matrix(spec.height, mask_size))
    cols = torch.from_numpy(bilinear_matrix(spec.width, mask_size)).T.contiguous()

    def objective(image: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor, noise: torch.Tensor,
                  target_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = rows.to(masks.dtype) @ masks @ cols.to(masks.dtype)  # (B, 1, H, W); float64 in the export check
        if spec.layout == "NHWC":
            up = up.permute(0, 2, 3, 1)
        perturbed = image * up + baseline * (1 - up) + noise
        scores = (score_head(model(perturbed), output_kind) * target_weights).sum(dim=-1)
        (gradient,) = torch.autograd.grad(scores.sum(), masks)
        return scores, gradient

    return objective
