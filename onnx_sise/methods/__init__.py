"""Explanation methods by name. Each takes a Context (image, targets, session, masked-pass
engine) and MethodOptions and returns one MethodResult per target."""

from __future__ import annotations

from collections.abc import Callable

from .cam import explain_cam
from .context import Context
from .options import MethodOptions, checked
from .perturbation import explain_rise, explain_score_cam
from .result import MethodResult
from .sigcam import explain_sigcam
from .sise import explain_sise
from .ucag import explain_ucag

Method = Callable[[Context, MethodOptions], list[MethodResult]]

METHODS: dict[str, Method] = {
    "sise": lambda ctx, o: explain_sise(ctx, mu=o.mu, fusion=o.fusion),
    "ada-sise": lambda ctx, o: explain_sise(ctx, adaptive=True, fusion=o.fusion, rule=o.ada_rule),
    "gradcam": lambda ctx, o: explain_cam(ctx, "gradcam", o.layer),
    "gradcam++": lambda ctx, o: explain_cam(ctx, "gradcam++", o.layer),
    "wgradcam": lambda ctx, o: explain_cam(ctx, "wgradcam", o.layer),
    "rise": lambda ctx, o: explain_rise(ctx, masks=o.rise_masks, cells=o.rise_cells, p=o.rise_p, seed=o.seed),
    "score-cam": lambda ctx, o: explain_score_cam(ctx, o.layer),
    "sigcam": lambda ctx, o: explain_sigcam(ctx, o.sigcam_base, o.layer, o.sigcam_theta, o.sigcam_lambda, o.igos(),
                                            o.sigcam_noise, o.seed),
}
UCAG_BASES = tuple(METHODS)
for _base in UCAG_BASES:
    METHODS[f"ucag-{_base}"] = (lambda base: lambda ctx, o: explain_ucag(ctx, METHODS[base], o, o.ucag_n, o.ucag_rho))(_base)

__all__ = ["METHODS", "UCAG_BASES", "Context", "MethodOptions", "MethodResult", "checked"]
