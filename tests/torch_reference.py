"""SISE in eager PyTorch, written from the paper's equations without the runtime code:
the independent reference for the onnxruntime + compiled-core implementation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LITE0_TAP_MODULES = ["_blocks.1", "_blocks.3", "_blocks.5", "_blocks.11", "_avg_pooling"]


def block_inputs_and_gradients(model: torch.nn.Module, modules: list[str], x: np.ndarray, target: int):
    """Inputs of the named modules and d softmax_target / d input, by hooks and retain_grad."""
    named = dict(model.named_modules())
    kept: list[torch.Tensor] = []
    hooks = [named[m].register_forward_pre_hook(lambda mod, args: kept.append(args[0])) for m in modules]
    try:
        image = torch.from_numpy(x[None]).requires_grad_(True)
        probabilities = torch.softmax(model(image), dim=1)
        for t in kept:
            t.retain_grad()
        probabilities[0, target].backward()
    finally:
        for h in hooks:
            h.remove()
    return probabilities.detach().numpy()[0], [t.detach()[0] for t in kept], [t.grad[0] for t in kept]


@torch.no_grad()
def sise_block_map(model: torch.nn.Module, x: np.ndarray, activations: torch.Tensor, gradients: torch.Tensor,
                   target: int, mu: float = 0.0, batch: int = 64) -> tuple[np.ndarray, int]:
    """V of SISE eq. 12 for one block: masks from positive-gradient maps (eq. 6-8),
    Omega = bilinear upsampling + min-max, contributions of eq. 10-11, mean over masks."""
    alpha = gradients.sum(dim=(1, 2))
    chosen = activations[alpha > mu * alpha.max()]
    height, width = x.shape[1:]
    masks = F.interpolate(chosen[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    lo = masks.amin(dim=(1, 2), keepdim=True)
    hi = masks.amax(dim=(1, 2), keepdim=True)
    informative = (hi > lo)[:, 0, 0]
    masks = ((masks - lo) / (hi - lo).clamp_min(1e-30))[informative]
    image = torch.from_numpy(x)
    total = torch.zeros(height, width, dtype=torch.float64)
    for start in range(0, masks.shape[0], batch):
        m = masks[start:start + batch]
        scores = torch.softmax(model(image[None] * m[:, None]), dim=1)[:, target]
        total += (scores[:, None, None] * m / m.sum(dim=(1, 2), keepdim=True)).double().sum(0)
    count = masks.shape[0]
    return (total / max(count, 1)).numpy(), count
