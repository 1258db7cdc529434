"""SISE (AAAI 2021) and Ada-SISE (ICASSP 2021): gradient-based feature-map selection
(SISE eq. 6-8, Ada-SISE eq. 1-6), attribution-based input sampling (SISE eq. 10-12)
and block-wise fusion (SISE Fig. 5). Masks are streamed in fixed-size batches and one
masked pass scores every target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import kernels
from ..context import SCORE, Context, every_tap
from ..options import SISE, Domain, option
from ..registry import Method, register
from ..result import MethodResult
from .fusion import DEFAULT_GATE, GATES, fuse_block_maps
from .masks import attribution_masks, distinct_maps

ADA_RULES = ("otsu", "paper")
SELECTIONS = ("hard", "soft")


def fusion_option() -> object:
    return option(DEFAULT_GATE, Domain("str", choices=GATES, group=SISE,
                                       help="Otsu gate of the fusion cascade: soft (sigmoid(100 (V - t)), chosen on "
                                            "the faithfulness metrics) or hard ([V > t], the paper's literal mask)"))


def selection_option() -> object:
    return option("hard", Domain("str", choices=SELECTIONS, group=SISE,
                                 help="feature-map selection: hard as in the papers, or soft (a kept map near the "
                                      "threshold weighs less, see --sise-margin)"))


def margin_option() -> object:
    return option(0.1, Domain("real", 0, 1, low_open=True, group=SISE,
                              help="with --sise-selection soft: a kept map weighs min(1, (v_k - cut) / margin), "
                                   "v_k = alpha_k / max alpha"))


@dataclass(frozen=True)
class SiseOptions:
    """mu: the threshold of SISE eq. 7 (a fraction of the largest alpha); fusion: the
    Otsu gate of the fusion cascade (SISE Fig. 5), "soft" (default) or "hard" (the paper's);
    sise_selection, sise_margin: see `selection_weights` ("hard" is the paper's)."""

    mu: float = option(0.0, Domain("real", 0, None, meaning=" (SISE eq. 7)", group=SISE,
                                   help="SISE feature-map threshold, eq. 7"))
    fusion: str = fusion_option()
    sise_selection: str = selection_option()
    sise_margin: float = margin_option()


@dataclass(frozen=True)
class AdaSiseOptions:
    """fusion: as SISE's; ada_rule: the threshold of Ada-SISE eq. 2-6, "otsu" (the
    between-class variance the paper says eq. 5 maximises) or the literal "paper" eq. 5;
    sise_selection, sise_margin: as SISE's."""

    fusion: str = fusion_option()
    ada_rule: str = option("otsu", Domain("str", choices=ADA_RULES, group=SISE,
                                          help="Ada-SISE threshold: otsu, or the literal eq. 5 (paper)"))
    sise_selection: str = selection_option()
    sise_margin: float = margin_option()


def average_gradients(gradients: np.ndarray) -> np.ndarray:
    """alpha_k = sum over locations of dPsi/dA_k (SISE eq. 6), for gradients (N, h, w)."""
    return gradients.reshape(gradients.shape[0], -1).sum(axis=1, dtype=np.float64)


def select_positive(alpha: np.ndarray, mu: float = 0.0) -> np.ndarray:
    """Indices k with alpha_k > mu * max_k alpha_k (SISE eq. 7-8); mu = 0 keeps the
    positive-gradient maps."""
    if mu < 0:
        raise ValueError(f"mu must be >= 0 (SISE eq. 7), got {mu}")
    return np.flatnonzero(alpha > mu * alpha.max())


def adaptive_threshold(positive: np.ndarray, rule: str = "otsu") -> float:
    """mu of Ada-SISE (eq. 2-6) for the positive normalised gradients Upsilon.

    Upsilon is sorted ascending (n values); splitting after the i-th value (i = 1..n-1)
    gives a low and a high class, and mu = Upsilon(argmax_i tau(i)) (eq. 6), so that the
    maps kept (v > mu) are the high class.
      rule="otsu":  tau(i) = (i/n) * ((n-i)/n) * (mean_low - mean_high)^2, the between-class
                    variance that the paper says eq. 5 maximises (Otsu 1979).
      rule="paper": eq. 2-5 as printed, tau(i) = omega_L * omega_H * ((n - 2i)/n)^2 with
                    omega_L = n * mean(Upsilon_1..i), omega_H = n * sum(Upsilon_i..n) / (n - i);
                    this swaps the roles of class means and class weights; offered for comparison.
    Fewer than two values: mu = 0, so every positive map is kept.
    """
    values = np.sort(np.asarray(positive, dtype=np.float64))
    n = values.size
    if n < 2:
        return 0.0
    i = np.arange(1, n)
    prefix = np.cumsum(values)[:-1]
    if rule == "otsu":
        mean_low = prefix / i
        mean_high = (values.sum() - prefix) / (n - i)
        tau = (i / n) * ((n - i) / n) * (mean_low - mean_high) ** 2
    elif rule == "paper":
        suffix_from_i = np.cumsum(values[::-1])[::-1][:-1]
        tau = (prefix / i * n) * (suffix_from_i / (n - i) * n) * ((n - 2 * i) / n) ** 2
    else:
        raise ValueError(f"rule must be 'otsu' or 'paper', got {rule!r}")
    return float(values[int(np.argmax(tau))])


def select_adaptive(alpha: np.ndarray, rule: str = "otsu") -> np.ndarray:
    """Ada-SISE selection (Algorithm 1): v_k = alpha_k / max alpha; keep v_k > mu, mu
    from `adaptive_threshold` of the positive v_k (eq. 1). No tuning parameter."""
    top = alpha.max()
    if not top > 0:
        return np.empty(0, dtype=np.int64)
    v = alpha / top
    return np.flatnonzero(v > adaptive_threshold(v[v > 0], rule))


def selection_weights(alpha: np.ndarray, selection: np.ndarray, cut: float, margin: float) -> np.ndarray:
    """The soft selection (not in the papers; docs/design.md section 6, "Stability"): the
    maps kept by the paper's threshold, each weighted w_k = min(1, (v_k - cut) / margin)
    with v_k = alpha_k / max alpha and `cut` the threshold on v (SISE: mu, eq. 7;
    Ada-SISE: the Otsu cut, eq. 6), so that a map's weight grows from 0 as its v_k
    crosses the cut instead of jumping to 1. The same maps are kept; V of eq. 12 becomes
    their weighted mean. When max alpha <= 0 every kept map weighs 1."""
    top = alpha.max()
    if not top > 0:
        return np.ones(selection.size)
    return np.clip((alpha[selection] / top - cut) / margin, 0.0, 1.0)


def selection_cut(alpha: np.ndarray, adaptive: bool, mu: float, rule: str) -> float:
    """The threshold on v_k = alpha_k / max alpha: mu (SISE eq. 7) or Ada-SISE's (eq. 6)."""
    if not adaptive:
        return mu
    top = alpha.max()
    v = alpha / top if top > 0 else alpha[:0]
    return adaptive_threshold(v[v > 0], rule)


def block_maps(ctx: Context, block: int, selections: list[np.ndarray], weights: list[np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V of SISE eq. 12 for one block and every target: the mean over that target's
    masks m of Psi_c(I . m) * m / sum(m). The masks of all targets are scored once
    (their union), and a mask that several maps give once (`distinct_maps`), counted
    for each. `weights` (per target, one per selected map; `selection_weights`) make it
    the weighted mean. Returns maps (T, H, W), masks used (T,) and duplicates among them (T,)."""
    activations = ctx.score_features(ctx.targets[0])[block].activations
    union = np.unique(np.concatenate(selections)) if selections else np.empty(0, np.int64)
    representatives, group = distinct_maps(activations, union)
    ctx.progress(int(union.size - representatives.size))
    multiplicity = np.zeros((len(selections), representatives.size), dtype=np.int64)
    weighted = np.zeros(multiplicity.shape)
    for t, selection in enumerate(selections):
        mine = np.isin(union, selection) & (group >= 0)
        np.add.at(multiplicity[t], group[mine], 1)
        if weights is not None:
            np.add.at(weighted[t], group[mine], weights[t][np.searchsorted(selection, union[mine])])
    counts = multiplicity if weights is None else weighted
    if ctx.io_binding is not None:
        acc, used = ctx.io_binding.block_contributions(activations, representatives, counts,
                                                  ctx.targets[:len(selections)], ctx.progress, ctx.cancellation)
        ctx.passes = ctx.io_binding.passes
    else:
        acc, used = _host_contributions(ctx, activations, representatives, counts)
    if weights is not None:  # the engines count weights: the masks used are the kept maps that give one
        used, total = multiplicity.sum(axis=1), weighted.sum(axis=1)
        maps = np.divide(acc, np.where(total > 0, total, 1.0)[:, None, None]).astype(np.float32)
    else:
        maps = np.divide(acc, np.maximum(used, 1)[:, None, None]).astype(np.float32)
    return maps, used, used - (multiplicity > 0).sum(axis=1)


def _host_contributions(ctx: Context, activations: np.ndarray, representatives: np.ndarray,
                        multiplicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = ctx.size
    acc = np.zeros((multiplicity.shape[0], height, width), dtype=np.float64)
    used = np.zeros(multiplicity.shape[0], dtype=np.int64)
    chunks = attribution_masks(activations, representatives, ctx.size, ctx.batch.shape[0])
    for masks, kept, scores in ctx.score_masks(chunks):
        rows = np.searchsorted(representatives, kept)
        ctx.progress(int(kept.size))
        for t in range(multiplicity.shape[0]):
            counts = multiplicity[t, rows]
            mine = counts > 0
            if mine.any():
                kernels.accumulate_contributions(np.ascontiguousarray(masks[mine]), scores[mine, t] * counts[mine], acc[t])
                used[t] += int(counts[mine].sum())
    return acc, used


def explain_sise(ctx: Context, *, mu: float = 0.0, adaptive: bool = False, fusion: str = DEFAULT_GATE,
                 rule: str = "otsu", selection: str = "hard", margin: float = 0.1) -> list[MethodResult]:
    """SISE (mu, SISE eq. 7) or Ada-SISE (adaptive=True, Ada-SISE Algorithm 1) for every
    target of `ctx`; the features of every target come from one gradient call (one row
    of class weights per target over one forward pass).
    selection="soft" weights the kept maps by `selection_weights` with `margin`."""
    taps = ctx.model.info.taps
    per_target = ctx.features(ctx.targets, SCORE)
    alphas = [[average_gradients(f.gradients) for f in feats] for feats in per_target]
    selections = [[select_adaptive(a, rule) if adaptive else select_positive(a, mu) for a in blocks]
                  for blocks in alphas]
    positive = [[int((a > 0).sum()) for a in blocks] for blocks in alphas]
    weights = None
    if selection == "soft":
        weights = [[selection_weights(a, s, selection_cut(a, adaptive, mu, rule), margin) for a, s in zip(blocks, kept)]
                   for blocks, kept in zip(alphas, selections)]
    block_results = [block_maps(ctx, b, [s[b] for s in selections], None if weights is None else [w[b] for w in weights])
                     for b in range(len(taps))]
    results = []
    for t in range(len(ctx.targets)):
        stack = np.stack([maps[t] for maps, _, _ in block_results])
        results.append(MethodResult(
            saliency=fuse_block_maps(stack, gate=fusion),
            block_maps={tap.name: stack[b] for b, tap in enumerate(taps)},
            masks_selected={tap.name: int(selections[t][b].size) for b, tap in enumerate(taps)},
            masks_used={tap.name: int(block_results[b][1][t]) for b, tap in enumerate(taps)},
            details={"positive_gradient_maps": {tap.name: positive[t][b] for b, tap in enumerate(taps)},
                     "duplicate_masks": {tap.name: int(block_results[b][2][t]) for b, tap in enumerate(taps)}},
        ))
    return results


register(Method("sise", lambda ctx, o: explain_sise(ctx, mu=o.mu, fusion=o.fusion, selection=o.sise_selection,
                                                    margin=o.sise_margin), (SiseOptions,),
                "SISE: feature maps selected by gradient, scored as input masks, fused across blocks",
                "SISE, AAAI 2021, eq. 6-12 and Fig. 5", io_binding=True, gradients=every_tap))
register(Method("ada-sise", lambda ctx, o: explain_sise(ctx, adaptive=True, fusion=o.fusion, rule=o.ada_rule,
                                                        selection=o.sise_selection, margin=o.sise_margin),
                (AdaSiseOptions,), "Ada-SISE: SISE with an adaptive, Otsu-like selection threshold",
                "Ada-SISE, ICASSP 2021, eq. 1-6", io_binding=True, gradients=every_tap))
