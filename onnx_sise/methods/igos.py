"""I-GOS (Qi, Khorram and Li, AAAI 2020) as used by the AOP framework (AOP paper eq. 6):
find the small mask M (1 = keep the pixel, 0 = replace it by the baseline) minimising

    L(M) = Psi_c(Phi(I, up(M))) + l1 * mean|1 - M| + tv * TV_beta(M),
    Phi(I, U) = I . U + I~ . (1 - U),  TV_beta(M) = mean|M[i] - M[i+1]|^beta (rows) + same (columns),

by integrated-gradient descent: the direction is the mean over s = k/S (k = 1..S) of
s * dPsi_c/dM at s * M, with Gaussian noise on each perturbed input (the "smooth" part),
plus the gradients of the two regularisers; the step is found by backtracking from 200
with the revised Armijo rule L(M - t d) <= L(M) - 1e-4 t ||d||^2 (factor 0.2, down to
1e-5), and M is clipped to [0, 1]. As in the I-GOS code, l1 is divided by 10 half way
(by 5 at 80 %) when the score has not moved. The AOP warm-up: the first `warmup`
iterations use a lightly blurred baseline, the rest the strongly blurred one.

dPsi/dM comes from the mask-gradient sub-graph of the explainable ONNX (one batched
call per iteration); the line search scores candidate masks on the scoring sub-graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import kernels
from ..model.session import MaskGradient

ScoreFn = Callable[[np.ndarray], np.ndarray]

ARMIJO_ALPHA = 1e-4
ARMIJO_BETA = 0.2
FIRST_STEP = 200.0
LAST_STEP = 1e-5
CANDIDATES_PER_CALL = 4


@dataclass(frozen=True)
class IgosSettings:
    """I-GOS hyper-parameters (the I-GOS code's defaults: l1_coeff 0.01 * 100, tv_coeff
    0.2 * 100, tv_beta 2, 20 integration points, 15 iterations)."""

    iterations: int = 15
    integration_steps: int = 20
    l1: float = 1.0
    tv: float = 20.0
    tv_beta: float = 2.0
    warmup: int = 5


@dataclass
class IgosTrace:
    """What the optimisation did: the score Psi_c(Phi(I, up(M))) at the start of every
    iteration and at the end, the total loss, the accepted steps, the inputs scored."""

    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    forward_passes: int = 0
    gradient_rows: int = 0


def l1_term(mask: np.ndarray) -> tuple[float, np.ndarray]:
    """mean|1 - M| and its gradient (the subgradient 0 where M = 1, as torch's abs)."""
    diff = 1.0 - mask.astype(np.float64)
    return float(np.abs(diff).mean()), -np.sign(diff) / mask.size


def tv_term(mask: np.ndarray, beta: float = 2.0) -> tuple[float, np.ndarray]:
    """TV_beta(M) = mean |M[i, j] - M[i+1, j]|^beta + mean |M[i, j] - M[i, j+1]|^beta and its gradient."""
    m = mask.astype(np.float64)
    value = 0.0
    gradient = np.zeros_like(m)
    for axis in (0, 1):
        d = np.diff(m, axis=axis) * -1.0  # M[i] - M[i+1]
        value += float((np.abs(d) ** beta).mean())
        g = beta * np.abs(d) ** (beta - 1) * np.sign(d) / d.size
        lead = [slice(None)] * 2
        trail = [slice(None)] * 2
        lead[axis], trail[axis] = slice(None, -1), slice(1, None)
        gradient[tuple(lead)] += g
        gradient[tuple(trail)] -= g
    return value, gradient


def perturbed(image: np.ndarray, baseline: np.ndarray, masks: np.ndarray, layout: str) -> np.ndarray:
    """Phi(I, up(M_b)) for masks (B, m, m): (B, ...) model inputs, upsampled as in the graph."""
    height, width = (image.shape[1], image.shape[2]) if layout == "NCHW" else (image.shape[0], image.shape[1])
    up = kernels.upsample_bilinear(masks, height, width)
    up = up[:, None] if layout == "NCHW" else up[..., None]
    return (image[None] * up + baseline[None] * (1 - up)).astype(np.float32)


def optimise_mask(mask: np.ndarray, image: np.ndarray, baselines: tuple[np.ndarray, np.ndarray], layout: str,
                  gradient: MaskGradient, target_weights: np.ndarray, score: ScoreFn, settings: IgosSettings,
                  noise_sigma: np.ndarray | None, rng: np.random.Generator,
                  check: Callable[[], None] = lambda: None) -> tuple[np.ndarray, IgosTrace]:
    """I-GOS from `mask` (m, m) in [0, 1] (AOP eq. 6); baselines = (warm-up, main).
    score(inputs (B, ...)) -> Psi_c (B,). noise_sigma: per-channel noise std in input units.
    `check` runs before every mask-gradient call (it raises to stop the optimisation)."""
    mask = np.clip(mask.astype(np.float32), 0, 1)
    trace = IgosTrace()
    l1 = settings.l1
    steps = settings.integration_steps
    fractions = (np.arange(steps, dtype=np.float64) + 1) / steps
    for it in range(settings.iterations):
        baseline = baselines[0] if it < settings.warmup else baselines[1]
        direction = np.zeros(mask.shape, np.float64)
        for start in range(0, steps, gradient.batch):
            check()
            part = fractions[start:start + gradient.batch]
            rows = (part[:, None, None] * mask[None]).astype(np.float32)
            noise = None
            if noise_sigma is not None:
                noise = rng.standard_normal((part.size, *image.shape), dtype=np.float32)
                noise *= noise_sigma
            _, grads = gradient(image, baseline, rows, noise, target_weights)
            direction += (part[:, None, None] * grads.astype(np.float64)).sum(axis=0) / steps
            trace.gradient_rows += part.size

        def regulariser(m: np.ndarray, l1: float = l1) -> tuple[float, np.ndarray]:
            a, ga = l1_term(m)
            b, gb = tv_term(m, settings.tv_beta)
            return l1 * a + settings.tv * b, l1 * ga + settings.tv * gb

        reg, reg_gradient = regulariser(mask)
        direction += reg_gradient
        now = float(score(perturbed(image, baseline, mask[None], layout))[0])
        trace.forward_passes += 1
        trace.scores.append(now)
        loss = reg + now
        trace.losses.append(loss)
        step = _line_search(mask, direction, loss, image, baseline, layout, score, regulariser, trace)
        trace.steps.append(step)
        mask = np.clip(mask - step * direction, 0, 1).astype(np.float32)
        if settings.iterations > 3 and it > 0:
            # the I-GOS code compares the first score with the one before this iteration's step
            moved = abs(trace.scores[0] - trace.scores[it - 1])
            if it == int(settings.iterations / 2) and moved <= 0.001:
                l1 /= 10
            elif it == int(settings.iterations / 1.25) and moved <= 0.01:
                l1 /= 5
    trace.scores.append(float(score(perturbed(image, baselines[1], mask[None], layout))[0]))
    trace.forward_passes += 1
    return mask, trace


def _line_search(mask: np.ndarray, direction: np.ndarray, loss: float, image: np.ndarray, baseline: np.ndarray,
                 layout: str, score: ScoreFn, regulariser: Callable[[np.ndarray], tuple[float, np.ndarray]],
                 trace: IgosTrace) -> float:
    """The largest t in 200 * 0.2^k with L(M - t d) <= L(M) - 1e-4 t ||d||^2, the
    first t below 1e-5 when none passes (I-GOS's backtracking, candidates scored in batches)."""
    candidates = [FIRST_STEP]
    while candidates[-1] >= LAST_STEP:
        candidates.append(candidates[-1] * ARMIJO_BETA)
    norm = float((direction ** 2).sum())
    for start in range(0, len(candidates), CANDIDATES_PER_CALL):
        chunk = candidates[start:start + CANDIDATES_PER_CALL]
        masks = np.stack([np.clip(mask - t * direction, 0, 1) for t in chunk]).astype(np.float32)
        psi = score(perturbed(image, baseline, masks, layout))
        trace.forward_passes += len(chunk)
        for t, m, p in zip(chunk, masks, psi):
            if regulariser(m)[0] + float(p) <= loss - ARMIJO_ALPHA * t * norm:
                return t
    return candidates[-1]
