"""Explanation methods by name. Each takes a Context (image, targets, session, masked-pass
engine) and MethodOptions and returns one MethodResult per target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cam import explain_cam
from .context import Context
from .perturbation import explain_rise, explain_score_cam
from .result import MethodResult
from .sise import explain_sise


@dataclass(frozen=True)
class MethodOptions:
    """mu: SISE eq. 7 threshold. fusion: "hard" or "soft" Otsu gate. layer: the tap of
    the CAM methods and Score-CAM (default: deepest). rise_*: RISE mask count, grid
    cells, keep probability. seed: RISE's generator seed. ada_rule: Ada-SISE threshold
    ("otsu" or the literal "paper" eq. 5)."""

    mu: float = 0.0
    fusion: str = "hard"
    layer: str | None = None
    rise_masks: int = 2000
    rise_cells: int = 7
    rise_p: float = 0.5
    seed: int = 0
    ada_rule: str = "otsu"


Method = Callable[[Context, MethodOptions], list[MethodResult]]

METHODS: dict[str, Method] = {
    "sise": lambda ctx, o: explain_sise(ctx, mu=o.mu, fusion=o.fusion),
    "ada-sise": lambda ctx, o: explain_sise(ctx, adaptive=True, fusion=o.fusion, rule=o.ada_rule),
    "gradcam": lambda ctx, o: explain_cam(ctx, "gradcam", o.layer),
    "gradcam++": lambda ctx, o: explain_cam(ctx, "gradcam++", o.layer),
    "wgradcam": lambda ctx, o: explain_cam(ctx, "wgradcam", o.layer),
    "rise": lambda ctx, o: explain_rise(ctx, masks=o.rise_masks, cells=o.rise_cells, p=o.rise_p, seed=o.seed),
    "score-cam": lambda ctx, o: explain_score_cam(ctx, o.layer),
}

__all__ = ["METHODS", "Context", "MethodOptions", "MethodResult"]
