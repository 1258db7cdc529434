"""AISE, OpenVINO XAI's black-box explainer for classification (openvino-xai 1.1.0,
methods/black_box/aise): Gaussian kernels placed by a global optimiser, their scores
aggregated by kernel density. On the masked-pass engine (`Context.score_masks`).

For each kernel width sigma (default np.linspace(0.1, 0.25, 3) of the input's sides), a
Gaussian mask m(u, v) = exp(-((x - u)^2 + (y - v)^2) / (2 sigma^2)) / its maximum, with
x, y in [0, 1] across the input's columns and rows, scores its centre (u, v) by
  s(u, v) = Psi_c(I . m) - Psi_c(I . (1 - m))      (preservation minus deletion)
and DIRECT (Jones et al. 1993, the original rule, not the locally biased one; epsilon
0.1) minimises -s over [0, 1]^2 with a budget of E = 50 evaluations per width (it ends
the iteration in which the budget runs out). Then, per width, K = sum_i s_i m_i over the
first E evaluations, divided by max K where that is positive; the map is the sum over the
widths divided by its maximum.

DIRECT is scipy.optimize.direct itself, as OpenVINO XAI calls it: the map depends on
the exact points DIRECT visits, and a reimplementation of its rectangle bookkeeping that
agreed with scipy on only part of a set of test functions gave maps with r = 0.55 on
coffee.png, so scipy is imported here (only when AISE runs; the `aise` extra installs it).
Each evaluation scores its two masks in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from .context import Context
from .options import Domain, option
from .registry import Method, register
from .result import MethodResult

GROUP = "AISE (--method aise)"


@dataclass(frozen=True)
class AiseOptions:
    """aise_evaluations: DIRECT's budget per kernel width (two masked passes each);
    aise_widths: how many kernel widths, spread evenly from aise_min_width to 0.25;
    aise_epsilon: DIRECT's epsilon (how far below the best value a rectangle must reach)."""

    aise_evaluations: int = option(50, Domain("int", 1, 10_000, group=GROUP,
                                              help="DIRECT evaluations per kernel width (2 masked passes each)"))
    aise_widths: int = option(3, Domain("int", 1, 16, group=GROUP, help="number of kernel widths"))
    aise_min_width: float = option(0.1, Domain("real", 0, 0.25, low_open=True, group=GROUP,
                                               help="smallest kernel width, a fraction of the input's side"))
    aise_epsilon: float = option(0.1, Domain("real", 0, 1, group=GROUP, help="DIRECT's epsilon"))


def gaussian_masks(centres: np.ndarray, width: float, size: tuple[int, int]) -> np.ndarray:
    """Masks (m, H, W): exp(-((x - u)^2 + (y - v)^2) / (2 width^2)) over x, y in [0, 1]
    across columns and rows, for centres (m, 2) = (u, v), each divided by its maximum."""
    height, breadth = size
    x = np.linspace(0, 1, breadth)[None, None, :]
    y = np.linspace(0, 1, height)[None, :, None]
    u, v = centres[:, 0, None, None], centres[:, 1, None, None]
    masks = np.exp(-((x - u) ** 2 / (2 * width ** 2) + (y - v) ** 2 / (2 * width ** 2)))
    return masks / masks.max(axis=(1, 2), keepdims=True)


def explain_aise(ctx: Context, options: AiseOptions) -> list[MethodResult]:
    try:
        from scipy.optimize import direct
    except ImportError:
        raise OptionError("method aise needs scipy (its DIRECT optimiser): pip install 'onnx_sise[aise]'") from None
    widths = np.linspace(options.aise_min_width, 0.25, options.aise_widths)
    results = []
    for t in range(len(ctx.targets)):
        saliency = np.zeros(ctx.size)
        for width in widths:
            centres: list[np.ndarray] = []
            scores: list[float] = []

            def loss(centre: np.ndarray, width: float = width, t: int = t) -> float:
                """-(Psi_c(I . m) - Psi_c(I . (1 - m))) for the mask centred at `centre`."""
                mask = np.clip(gaussian_masks(np.asarray(centre)[None], width, ctx.size), 0, 1)
                _, _, psi = next(ctx.score_masks([(np.concatenate([mask, 1 - mask]).astype(np.float32), None)]))
                ctx.progress(2)
                centres.append(np.array(centre, dtype=np.float64))
                scores.append(float(psi[0, t]) - float(psi[1, t]))
                return -scores[-1]

            direct(loss, [(0.0, 1.0), (0.0, 1.0)], eps=options.aise_epsilon, maxfun=options.aise_evaluations,
                   locally_biased=False)
            used = options.aise_evaluations
            density = np.tensordot(np.asarray(scores[:used]), gaussian_masks(np.stack(centres[:used]), width, ctx.size),
                                   axes=1)
            if density.max() > 0:
                density /= density.max()
            saliency += density
        saliency /= saliency.max()
        results.append(MethodResult(saliency=saliency.astype(np.float32), block_maps={},
                                    masks_used={"aise": ctx.passes},
                                    details={"widths": [float(w) for w in widths],
                                             "evaluations": options.aise_evaluations}))
    return results


register(Method("aise", explain_aise, (AiseOptions,),
                "AISE: Gaussian kernels placed by DIRECT, scored by what they keep minus what they delete",
                "OpenVINO XAI 1.1.0 (AISE); DIRECT, Jones et al., JOTA 1993"))
