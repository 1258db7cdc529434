"""Gradient methods from the gradient sub-graph alone (one gradient call per target,
no masked passes), on the raw class output y_c (the logit), at one tap (default: the
deepest block, the layer closest to the classifier). A: the tap's activations (K, h, w),
g = dy_c/dA, Z = h * w locations. Every method gives a map at the tap's size,
M = ReLU(sum_k W_k . A_k), with W_k a weight per channel or per location:

AOP/SIGCAM paper (Ding et al., AAAI 2021) eq. 1-4:
  Grad-CAM:  W_k = (1/Z) sum_ij g_k(i, j)                                 (eq. 1)
  WGradCAM:  W_k = (1/Z) sum_ij g_k(i, j) A_k(i, j)                       (eq. 2)
  M = ReLU(sum_k W_k A_k) (eq. 3), then min-max normalised (eq. 4).
Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19 with the exponential-score identity,
so that higher derivatives are powers of g):
  a_k(i, j) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)  (0 where g = 0),
  W_k = sum_ij a_k(i, j) ReLU(g_k(i, j)).
XGrad-CAM (Fu et al., BMVC 2020; the weights that best satisfy its Sensitivity and
Conservation axioms):
  W_k = sum_ij (A_k(i, j) / sum_ab A_k(a, b)) g_k(i, j)  (0 where sum_ab A_k = 0).
HiResCAM (Draelos and Carin, 2020): element-wise, W_k(i, j) = g_k(i, j): the map is
  sum_k g_k * A_k, which for a CNN ending in global average pooling and one linear layer
  is exactly each location's contribution to y_c (CAM, generalised).
LayerCAM (Jiang et al., IEEE TIP 2021): element-wise, W_k(i, j) = ReLU(g_k(i, j)).
Eigen-CAM (Muhammad and Yeasin, IJCNN 2020): no gradient and no class: the activations
  as a (Z, K) matrix X (one row per location), its columns centred, X = U S V^T; the map
  is X v_1 (the projection on the first principal component), M = ReLU(X v_1).
  The sign of v_1 is arbitrary (SVD gives -v_1 as well): we take the v_1 with
  sum_k v_1(k) >= 0, the one whose map correlates positively with the centred total
  activation X 1 (sum_k A_k): (X v_1) . (X 1) = s_1^2 sum_k v_1(k). The peer
  (pytorch-grad-cam 1.5.7, get_2d_projection) keeps whatever sign LAPACK returns, so its
  map can be the ReLU of the other half (Lite0, block3, chelsea.png: r = -0.46 with ours).
  It centres the columns before the SVD (its comment: else the map comes out negative),
  and we follow it there.
At a tap followed only by global average pooling and one linear layer (Lite0's deepest),
g_k = w_ck / Z everywhere, so Grad-CAM, XGrad-CAM and HiResCAM give the same map there.

The peer's ReLU is part of each method here (as eq. 3). Its min-max normalisation and
its upsampling to the input are presentation: our maps stay at the tap's size, as
Grad-CAM's, and the Explainer upsamples them to the photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from ..model.info import ModelInfo
from .context import LOGIT, Context, GradientNeed
from .options import layer_option
from .registry import Method, register
from .result import MethodResult

CamMap = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CamOptions:
    """layer: the tap the map is made at, e.g. "block3" (default: the deepest)."""

    layer: str | None = layer_option()


def _channels(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """sum_k w_k A_k for one weight per channel, (K,) and (K, h, w) -> (h, w)."""
    return np.tensordot(weights, activations, axes=1)


def gradcam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return _channels(g.mean(axis=(1, 2)), a)


def wgradcam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return _channels((g * a).mean(axis=(1, 2)), a)


def gradcam_plusplus(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    g2 = g * g
    denominator = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g2 * g
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=(g != 0) & (denominator != 0))
    return _channels((alpha * np.maximum(g, 0)).sum(axis=(1, 2)), a)


def xgradcam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    total = a.sum(axis=(1, 2))
    weights = np.divide((g * a).sum(axis=(1, 2)), total, out=np.zeros_like(total), where=total != 0)
    return _channels(weights, a)


def hirescam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return (g * a).sum(axis=0)


def layercam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return (np.maximum(g, 0) * a).sum(axis=0)


def eigencam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """X v_1 with X the centred (Z, K) activations and sum_k v_1(k) >= 0; g is unused."""
    channels, height, width = a.shape
    x = a.reshape(channels, height * width).T
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    first = vt[0] if vt[0].sum() >= 0 else -vt[0]
    return (x @ first).reshape(height, width)


# Each method's map before the ReLU, (K, h, w) activations and gradients -> (h, w) float64.
CAMS: dict[str, CamMap] = {"gradcam": gradcam, "gradcam++": gradcam_plusplus, "wgradcam": wgradcam,
                           "xgradcam": xgradcam, "hirescam": hirescam, "layercam": layercam, "eigencam": eigencam}
CAM_METHODS = tuple(CAMS)
CLASS_AGNOSTIC = ("eigencam",)  # the same map for every target: one gradient call serves all


def class_activation_map(activations: np.ndarray, gradients: np.ndarray, method: str) -> np.ndarray:
    """M = ReLU(sum_k W_k . A_k) (AOP eq. 3) of `method` for activations and gradients
    (K, h, w): (h, w) float32 at the tap's size, not normalised."""
    if method not in CAMS:
        raise ValueError(f"CAM method must be one of {CAM_METHODS}, got {method!r}")
    cam = CAMS[method](activations.astype(np.float64), gradients.astype(np.float64))
    return np.maximum(cam, 0).astype(np.float32)


def explain_cam(ctx: Context, method: str, layer: str | None = None) -> list[MethodResult]:
    """One gradient call for every target, the backward from y down to the chosen tap only."""
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    targets = ctx.targets[:1] if method in CLASS_AGNOSTIC else ctx.targets
    features = ctx.features(targets, LOGIT, index)
    results = []
    for t in range(len(ctx.targets)):
        feat = features[0 if method in CLASS_AGNOSTIC else t][index]
        cam = class_activation_map(feat.activations, feat.gradients, method)
        results.append(MethodResult(saliency=cam, block_maps={taps[index].name: cam},
                                    details={"layer": taps[index].name}))
    return results


def tap_index(ctx: Context, layer: str | None) -> int:
    """Index of tap `layer` (its name, e.g. "block4"); None means the deepest."""
    return tap_position(ctx.model.info, layer)


def tap_position(info: ModelInfo, layer: str | None) -> int:
    """Index of tap `layer` of the model described by `info`; None means the deepest."""
    names = [t.name for t in info.taps]
    if layer is None:
        return len(names) - 1
    if layer not in names:
        raise OptionError(f"layer {layer!r} is not a tap of this model: choose one of {', '.join(names)}")
    return names.index(layer)


def one_tap(records: tuple[CamOptions], info: ModelInfo) -> GradientNeed:
    """The gradients of y at the chosen tap alone."""
    return GradientNeed(LOGIT, tap_position(info, records[0].layer))


def cam_method(name: str, summary: str, paper: str) -> Method:
    """The CAM method `name` (one of CAM_METHODS) as a registry entry."""
    def explain(ctx: Context, options: CamOptions) -> list[MethodResult]:
        return explain_cam(ctx, name, options.layer)

    return Method(name, explain, (CamOptions,), summary, paper, gradients=one_tap)


AOP = "AOP/SIGCAM, AAAI 2021, eq. 1-4"
register(cam_method("gradcam", "Grad-CAM: feature maps weighted by their mean gradient (AOP eq. 1, 3)", AOP))
register(cam_method("gradcam++", "Grad-CAM++: pixel-wise weights of positive gradients (its eq. 19)",
                    "Grad-CAM++, WACV 2018, eq. 19"))
register(cam_method("wgradcam", "WGradCAM: feature maps weighted by gradient x activation (AOP eq. 2-3)", AOP))
register(cam_method("xgradcam", "XGrad-CAM: feature maps weighted by gradients averaged with the activations",
                    "Fu et al., XGrad-CAM, BMVC 2020"))
register(cam_method("hirescam", "HiResCAM: gradient x activation summed over channels, per location",
                    "Draelos and Carin, HiResCAM, arXiv 2011.08891, 2020"))
register(cam_method("layercam", "LayerCAM: activations weighted by their positive gradients, per location",
                    "Jiang et al., LayerCAM, IEEE TIP 2021"))
register(cam_method("eigencam", "Eigen-CAM: the activations' first principal component (no gradient, no class)",
                    "Muhammad and Yeasin, Eigen-CAM, IJCNN 2020"))
