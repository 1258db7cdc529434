"""Explanation methods by name. Each takes a Context (image, targets, session, masked-pass
engine) and MethodOptions and returns one MethodResult per target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cam import explain_cam
from .context import Context
from .igos import IgosSettings
from .perturbation import explain_rise, explain_score_cam
from .result import MethodResult
from .sigcam import AOP_BASES, DEFAULT_NOISE, explain_sigcam
from .sise import explain_sise
from .ucag import explain_ucag


@dataclass(frozen=True)
class MethodOptions:
    """mu: SISE eq. 7 threshold. fusion: "hard" or "soft" Otsu gate. layer: the tap of
    the CAM methods and Score-CAM (default: deepest). rise_*: RISE mask count, grid
    cells, keep probability. seed: RISE's generator seed. ada_rule: Ada-SISE threshold
    ("otsu" or the literal "paper" eq. 5).

    SIGCAM / AOP (AOP paper): sigcam_base, the activation map of the base mask (wgradcam,
    gradcam, gradcam++, or none for plain I-GOS); sigcam_theta, sigcam_lambda: eq. 5
    (ImageNet values); sigcam_iterations, sigcam_warmup (iterations against the light
    blur), sigcam_steps (integration points), sigcam_l1, sigcam_tv: eq. 6 and I-GOS;
    sigcam_noise: std of the integration noise in units of the 0..1 pixel range.
    UCAG: ucag_n (n x n patches), ucag_rho (patch size / image size); see methods/ucag.py."""

    mu: float = 0.0
    fusion: str = "hard"
    layer: str | None = None
    rise_masks: int = 2000
    rise_cells: int = 7
    rise_p: float = 0.5
    seed: int = 0
    ada_rule: str = "otsu"
    sigcam_base: str = "wgradcam"
    sigcam_theta: float = 0.7
    sigcam_lambda: float = 0.15
    sigcam_iterations: int = IgosSettings.iterations
    sigcam_warmup: int = IgosSettings.warmup
    sigcam_steps: int = IgosSettings.integration_steps
    sigcam_l1: float = IgosSettings.l1
    sigcam_tv: float = IgosSettings.tv
    sigcam_noise: float = DEFAULT_NOISE
    ucag_n: int = 6
    ucag_rho: float = 0.555

    def problems(self) -> list[str]:
        """What is wrong with the SIGCAM and UCAG options, one phrase each."""
        found = []
        if self.sigcam_base not in AOP_BASES:
            found.append(f"sigcam_base must be one of {', '.join(AOP_BASES)}, got {self.sigcam_base!r}")
        if not 0 <= self.sigcam_theta <= 1 or not 0 <= self.sigcam_lambda <= 1:
            found.append(f"sigcam_theta and sigcam_lambda must lie in [0, 1] (AOP eq. 5), got "
                         f"{self.sigcam_theta} and {self.sigcam_lambda}")
        if self.sigcam_iterations < 1 or self.sigcam_steps < 1 or self.sigcam_warmup < 0:
            found.append("sigcam_iterations and sigcam_steps must be at least 1 and sigcam_warmup at least 0")
        if min(self.sigcam_l1, self.sigcam_tv, self.sigcam_noise) < 0:
            found.append("sigcam_l1, sigcam_tv and sigcam_noise must be >= 0")
        if self.ucag_n < 2:
            found.append(f"ucag_n must be at least 2 (n x n overlapping patches), got {self.ucag_n}")
        if not 0 < self.ucag_rho <= 1:
            found.append(f"ucag_rho (patch size / image size) must lie in (0, 1], got {self.ucag_rho}")
        return found

    def igos(self) -> IgosSettings:
        return IgosSettings(iterations=self.sigcam_iterations, integration_steps=self.sigcam_steps, l1=self.sigcam_l1,
                            tv=self.sigcam_tv, warmup=self.sigcam_warmup)


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

__all__ = ["METHODS", "UCAG_BASES", "Context", "MethodOptions", "MethodResult"]
