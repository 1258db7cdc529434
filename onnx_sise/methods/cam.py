"""Gradient methods from the gradient sub-graph alone (one gradient call per target,
no masked passes), on the raw class output y_c (the logit), at one tap (default: the
deepest block, the layer closest to the classifier).

AOP/SIGCAM paper (Ding et al., AAAI 2021) eq. 1-4, Z = h * w locations:
  Grad-CAM:  w_k = (1/Z) sum_ij dy_c/dA_k(i, j)                          (eq. 1)
  WGradCAM:  w_k = (1/Z) sum_ij dy_c/dA_k(i, j) * A_k(i, j)              (eq. 2)
  M = ReLU(sum_k w_k A_k) (eq. 3), then min-max normalised (eq. 4).
Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential-score identity, so
that higher derivatives are powers of g = dy_c/dA):
  a_k(i, j) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)  (0 where g = 0),
  w_k = sum_ij a_k(i, j) ReLU(g(i, j)),  M = ReLU(sum_k w_k A_k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from .context import Context
from .options import layer_option
from .registry import Method, register
from .result import MethodResult

CAM_METHODS = ("gradcam", "gradcam++", "wgradcam")


@dataclass(frozen=True)
class CamOptions:
    """layer: the tap the map is made at, e.g. "block3" (default: the deepest)."""

    layer: str | None = layer_option()


def cam_weights(activations: np.ndarray, gradients: np.ndarray, method: str) -> np.ndarray:
    """w_k for activations and gradients (N, h, w)."""
    a = activations.astype(np.float64)
    g = gradients.astype(np.float64)
    if method == "gradcam":
        return g.mean(axis=(1, 2))
    if method == "wgradcam":
        return (g * a).mean(axis=(1, 2))
    if method == "gradcam++":
        g2 = g * g
        denominator = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g2 * g
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=(g != 0) & (denominator != 0))
        return (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    raise ValueError(f"CAM method must be one of {CAM_METHODS}, got {method!r}")


def class_activation_map(activations: np.ndarray, gradients: np.ndarray, method: str) -> np.ndarray:
    """M = ReLU(sum_k w_k A_k) (eq. 3) at the tap's size, (h, w) float32, not normalised."""
    weights = cam_weights(activations, gradients, method)
    return np.maximum(np.tensordot(weights, activations.astype(np.float64), axes=1), 0).astype(np.float32)


def explain_cam(ctx: Context, method: str, layer: str | None = None) -> list[MethodResult]:
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    results = []
    for target in ctx.targets:
        feat = ctx.logit_features(target)[index]
        cam = class_activation_map(feat.activations, feat.gradients, method)
        results.append(MethodResult(saliency=cam, block_maps={taps[index].name: cam},
                                    details={"layer": taps[index].name}))
    return results


def tap_index(ctx: Context, layer: str | None) -> int:
    """Index of tap `layer` (its name, e.g. "block4"); None means the deepest."""
    names = [t.name for t in ctx.model.info.taps]
    if layer is None:
        return len(names) - 1
    if layer not in names:
        raise OptionError(f"layer {layer!r} is not a tap of this model: choose one of {', '.join(names)}")
    return names.index(layer)


def cam_method(name: str, summary: str) -> Method:
    """The CAM method `name` (one of CAM_METHODS) as a registry entry."""
    def explain(ctx: Context, options: CamOptions) -> list[MethodResult]:
        return explain_cam(ctx, name, options.layer)

    return Method(name, explain, (CamOptions,), summary, "AOP/SIGCAM, AAAI 2021, eq. 1-4; Grad-CAM++, WACV 2018")


register(cam_method("gradcam", "Grad-CAM: feature maps weighted by their mean gradient (AOP eq. 1, 3)"))
register(cam_method("gradcam++", "Grad-CAM++: pixel-wise weights of positive gradients (its eq. 19)"))
register(cam_method("wgradcam", "WGradCAM: feature maps weighted by gradient x activation (AOP eq. 2-3)"))
