"""SIGCAM and the AOP framework (Zhang, Rao and Yang, AAAI 2021): an activation map as
the base mask, optimised by a perturbation method (I-GOS, methods/igos.py).

  1. Base activation map M at one tap (default: the deepest): WGradCAM (eq. 2-3) for
     SIGCAM, or any CAM method for another AOP instance; min-max normalised (eq. 4).
  2. M = lambda * filter(M < theta) (eq. 5): values below theta set to 0, the rest
     scaled by lambda (ImageNet: theta = 0.7, lambda = 0.15).
  3. Upsampled to the small mask size (28 x 28) and turned into a deletion mask:
     M0 = 1 - up(M) (1 keeps a pixel, 0 replaces it with the blurred baseline).
  4. M* = argmin Psi_c(Phi(I, up(M))) + l1 ||1 - M|| + tv TV(M) (eq. 6) by I-GOS from M0,
     the first iterations against a lightly blurred baseline (the AOP warm-up).
  5. The saliency is 1 - up(M*): what must be deleted to destroy the score.

base="none" starts I-GOS from the all-ones mask (plain I-GOS, for comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..images.blur import blurred
from ..model.session import MaskGradient
from .cam import CAM_METHODS, class_activation_map, tap_index
from .context import Context
from .igos import IgosSettings, optimise_mask, perturbed
from .options import SIGCAM, Domain, layer_option, option, seed_option
from .registry import Method, register
from .result import MethodResult

AOP_BASES = (*CAM_METHODS, "none")
# I-GOS adds N(0, 0.2) noise in ImageNet-normalised units: 0.2 * 0.226 of the 0..1 pixel range.
DEFAULT_NOISE = 0.045
MAIN_BLUR = (51, 50.0)
WARMUP_BLUR = (11, 5.0)
PAPER_SETTINGS = IgosSettings()


@dataclass(frozen=True)
class SigcamOptions:
    """sigcam_base: the CAM map of the base mask (wgradcam for SIGCAM, another CAM method
    of methods/cam.py for other AOP instances, none for plain I-GOS), at `layer`; sigcam_theta,
    sigcam_lambda: eq. 5 (ImageNet values); sigcam_iterations, sigcam_warmup (iterations
    against the light blur), sigcam_steps (integration points), sigcam_l1, sigcam_tv:
    eq. 6 and I-GOS; sigcam_noise: std of the integration noise in units of the 0..1
    pixel range; seed: of that noise."""

    sigcam_base: str = option("wgradcam", Domain("str", choices=AOP_BASES, group=SIGCAM,
                                                 help="activation map of the base mask; none = plain I-GOS"))
    layer: str | None = layer_option()
    sigcam_theta: float = option(0.7, Domain("real", 0, 1, meaning=" (AOP eq. 5)", group=SIGCAM,
                                             help="eq. 5 filter threshold"))
    sigcam_lambda: float = option(0.15, Domain("real", 0, 1, meaning=" (AOP eq. 5)", group=SIGCAM,
                                               help="eq. 5 modulating factor"))
    sigcam_iterations: int = option(PAPER_SETTINGS.iterations, Domain("int", 1, 1000, group=SIGCAM,
                                                                      help="I-GOS iterations"))
    sigcam_warmup: int = option(PAPER_SETTINGS.warmup, Domain("int", 0, 1000, group=SIGCAM,
                                                              help="first iterations against a light blur"))
    sigcam_steps: int = option(PAPER_SETTINGS.integration_steps, Domain("int", 1, 10_000, group=SIGCAM,
                                                                        help="integrated-gradient points"))
    sigcam_l1: float = option(PAPER_SETTINGS.l1, Domain("real", 0, 1e6, group=SIGCAM, help="eq. 6 L1 weight"))
    sigcam_tv: float = option(PAPER_SETTINGS.tv, Domain("real", 0, 1e6, group=SIGCAM,
                                                        help="eq. 6 total-variation weight"))
    sigcam_noise: float = option(DEFAULT_NOISE, Domain("real", 0, 10, group=SIGCAM,
                                                       help="integration noise std, fraction of the pixel range"))
    seed: int = seed_option()

    def igos(self) -> IgosSettings:
        return IgosSettings(iterations=self.sigcam_iterations, integration_steps=self.sigcam_steps, l1=self.sigcam_l1,
                            tv=self.sigcam_tv, warmup=self.sigcam_warmup)


def base_mask(cam: np.ndarray, theta: float, lam: float, mask_size: int) -> np.ndarray:
    """M0 = 1 - up(lambda * filter(minmax(cam) < theta)) at (mask_size, mask_size), AOP eq. 4-5."""
    m = np.array(cam, dtype=np.float32)[None]
    kernels.minmax_normalize(m)
    filtered = np.where(m >= theta, lam * m, 0.0).astype(np.float32)
    return 1.0 - kernels.upsample_bilinear(filtered, mask_size, mask_size)[0]


def noise_sigma(ctx: Context, noise: float) -> np.ndarray | None:
    """Per-channel noise std in model-input units for `noise` in units of the 0..1 pixel range."""
    if noise <= 0:
        return None
    spec = ctx.model.info.input
    sigma = noise * 255.0 * spec.scale / np.asarray(spec.std, dtype=np.float32)
    return (sigma[:, None, None] if spec.layout == "NCHW" else sigma).astype(np.float32)


def explain_sigcam(ctx: Context, base: str = "wgradcam", layer: str | None = None, theta: float = 0.7,
                   lam: float = 0.15, settings: IgosSettings = PAPER_SETTINGS, noise: float = DEFAULT_NOISE,
                   seed: int = 0) -> list[MethodResult]:
    gradient = MaskGradient(ctx.model)
    layout = ctx.model.info.input.layout
    taps = ctx.model.info.taps
    index = tap_index(ctx, layer)
    baselines = (blurred(ctx.image, layout, *WARMUP_BLUR), blurred(ctx.image, layout, *MAIN_BLUR))
    sigma = noise_sigma(ctx, noise)
    height, width = ctx.size
    results = []
    for target in ctx.targets:
        if base == "none":
            cam = np.ones((taps[index].height, taps[index].width), np.float32)
            start = np.ones((gradient.mask_size, gradient.mask_size), np.float32)
        else:
            feat = ctx.logit_features(target)[index]
            cam = class_activation_map(feat.activations, feat.gradients, base)
            start = base_mask(cam, theta, lam, gradient.mask_size)
        onehot = np.zeros(ctx.model.info.num_classes, np.float32)
        onehot[target] = 1.0

        def score(inputs: np.ndarray, target: int = target) -> np.ndarray:
            ctx.cancellation.check(ctx.passes)  # once per line search: every iteration
            return ctx.model.batch_scores(inputs, [target])[:, 0]

        mask, trace = optimise_mask(start, ctx.image, baselines, layout, gradient, onehot, score, settings, sigma,
                                    np.random.default_rng(seed), check=lambda: ctx.cancellation.check(ctx.passes))
        ctx.passes += trace.forward_passes + trace.gradient_rows
        ctx.progress(settings.iterations)
        start_score = float(score(perturbed(ctx.image, baselines[1], start[None], layout))[0])
        saliency = 1.0 - kernels.upsample_bilinear(mask[None], height, width)[0]
        results.append(MethodResult(
            saliency=saliency, block_maps={taps[index].name: cam, "mask": mask},
            masks_used={"line_search": trace.forward_passes + 1, "integrated_gradient": trace.gradient_rows},
            details={"layer": taps[index].name, "base": base, "iterations": settings.iterations,
                     "score_base_mask": round(start_score, 6), "score_optimised_mask": round(trace.scores[-1], 6),
                     "kept_fraction": round(float(mask.mean()), 4)}))
    return results


register(Method("sigcam", lambda ctx, o: explain_sigcam(ctx, o.sigcam_base, o.layer, o.sigcam_theta, o.sigcam_lambda,
                                                        o.igos(), o.sigcam_noise, o.seed), (SigcamOptions,),
                "SIGCAM: a WGradCAM base mask optimised by I-GOS (the AOP framework)", "AOP/SIGCAM, AAAI 2021, eq. 2-6"))
