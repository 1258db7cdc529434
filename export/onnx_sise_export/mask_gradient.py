"""The mask-gradient sub-graph of SIGCAM / I-GOS (AOP paper eq. 6): for a batch of
small masks M_b, the score of the perturbed input

    Phi(I, M_b) = I . up(M_b) + I~ . (1 - up(M_b)) + noise_b

and d score / d M_b, traced like the block gradients (make_fx with the decomposition
table of `gradient.py`). up() is the half-pixel bilinear upsampling of onnx_sise's core
(`align_corners=False`), written as two constant interpolation matrices so that its
gradient is a plain MatMul and the graph differentiates with respect to the small mask.

make_fx bakes shapes in, so the batch (the integration steps of one I-GOS iteration)
is fixed at export; the runtime pads a shorter batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from onnx_sise.errors import ExportError
from onnx_sise.model_info import InputSpec

from .gradient import decomposition_table, score_head

MASK_SIZE = 28
MASK_BATCH = 20


def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) matrix R with R @ v = half-pixel-centre bilinear resize of v
    (the convention of onnx_sise.core.upsample_bilinear and torch's align_corners=False)."""
    src = np.clip((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5, 0, None)
    lo = np.minimum(np.floor(src).astype(int), in_size - 1)
    frac = np.where(lo >= in_size - 1, 0.0, src - lo)
    hi = np.minimum(lo + 1, in_size - 1)
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), 1 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


def mask_objective(model: nn.Module, spec: InputSpec, output_kind: str, mask_size: int = MASK_SIZE
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


def example_inputs(image: torch.Tensor, num_classes: int, batch: int = MASK_BATCH, mask_size: int = MASK_SIZE
                   ) -> tuple[torch.Tensor, ...]:
    """Inputs of the objective for tracing and verification: a blurred-looking baseline,
    masks with values across [0, 1], small noise, the top class of nothing in particular."""
    generator = torch.Generator().manual_seed(1)
    baseline = image.mean() + 0.1 * image
    masks = torch.rand(batch, 1, mask_size, mask_size, generator=generator)
    noise = 0.05 * torch.randn((batch, *image.shape[1:]), generator=generator)
    weights = torch.zeros(1, num_classes)
    weights[0, 0] = 1.0
    return image, baseline, masks, noise, weights


def trace_mask_gradient(model: nn.Module, spec: InputSpec, output_kind: str, image: torch.Tensor,
                        num_classes: int, batch: int = MASK_BATCH, mask_size: int = MASK_SIZE) -> torch.fx.GraphModule:
    """Trace the mask objective with a fixed batch into a graph of forward ATen ops."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    image, baseline, masks, noise, weights = example_inputs(image, num_classes, batch, mask_size)
    fn = mask_objective(model, spec, output_kind, mask_size)
    traced = make_fx(fn, decomposition_table=decomposition_table())(image, baseline, masks.requires_grad_(True),
                                                                    noise, weights)
    leftover = sorted({str(n.target) for n in traced.graph.nodes
                       if n.op == "call_function" and "backward" in str(n.target)})
    if leftover:
        raise ExportError(f"the mask-gradient export does not cover {', '.join(leftover)}")
    return traced
