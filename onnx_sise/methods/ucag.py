"""UCAG, Unfold and Conquer Attribution Guidance (arXiv 2312.14201, 2023): refine any
explanation method by explaining overlapping, rescaled patches and folding them back.

  1. Unfold (eq. 1): n x n patches of (rho H, rho W) at evenly spaced corners, the first
     at the top-left and the last at the bottom-right, so every pixel is covered.
  2. Rescale each patch to the model's input size (Psi(., alpha)). The explainable ONNX
     has a fixed input size, so alpha = 1 / rho here (1.8 for rho = 0.555); the paper's
     alpha = 2.6 needs a model that takes larger inputs.
  3. Explain each patch with the base method (eq. 2-3), the raw map (not normalised or
     clipped), and score it: Y = exp(softmax score of the target) (eq. 4).
  4. M_s = Psi(E_s * Y_s, beta): weighted maps rescaled to the patch size (eq. 5).
  5. Fold (eq. 6): sum the maps at their places and divide by the duplication count Gamma
     (how many patches cover each pixel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import kernels
from .context import Context
from .options import UCAG, Domain, option
from .registry import METHODS, Method, register
from .result import MethodResult


@dataclass(frozen=True)
class UcagOptions:
    """ucag_n: n of eq. 1, n x n overlapping patches; ucag_rho: rho of eq. 1, the patch
    size as a fraction of the image size."""

    ucag_n: int = option(6, Domain("int", 2, 32, meaning=" (n x n overlapping patches)", group=UCAG,
                                   help="n x n patches"))
    ucag_rho: float = option(0.555, Domain("real", 0, 1, low_open=True, meaning=" (patch size / image size)",
                                           group=UCAG, help="patch size / image size"))


@dataclass(frozen=True)
class PatchGrid:
    """Where the n x n patches lie: top-left corners (rows, cols) and patch size."""

    size: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    patch: tuple[int, int]

    @property
    def corners(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.rows for x in self.cols]


def _starts(length: int, patch: int, n: int) -> tuple[int, ...]:
    return tuple(int(round(i * (length - patch) / (n - 1))) for i in range(n))


def patch_grid(size: tuple[int, int], n: int = 6, rho: float = 0.555) -> PatchGrid:
    """The unfolding U(I, rho, n) of eq. 1 for an image of `size` (H, W)."""
    height, width = size
    patch = (min(height, max(1, round(rho * height))), min(width, max(1, round(rho * width))))
    return PatchGrid(size=size, rows=_starts(height, patch[0], n), cols=_starts(width, patch[1], n), patch=patch)


def duplication_count(grid: PatchGrid) -> np.ndarray:
    """Gamma of eq. 6: how many patches cover each pixel, (H, W)."""
    count = np.zeros(grid.size, np.float64)
    ph, pw = grid.patch
    for y, x in grid.corners:
        count[y:y + ph, x:x + pw] += 1
    return count


def fold(maps: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """V(M_s, Gamma) of eq. 6: maps (n^2, ph, pw) summed at their places, averaged by Gamma."""
    total = np.zeros(grid.size, np.float64)
    for m, corner in zip(maps, grid.corners):
        place(total, m, corner)
    return averaged(total, grid)


def place(total: np.ndarray, patch_map: np.ndarray, corner: tuple[int, int]) -> None:
    """Add one patch's map (ph, pw) into the running sum of eq. 6 at its top-left corner."""
    y, x = corner
    total[..., y:y + patch_map.shape[-2], x:x + patch_map.shape[-1]] += patch_map


def averaged(total: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """The sum of eq. 6 (..., H, W) divided by the duplication count Gamma."""
    count = duplication_count(grid)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0).astype(np.float32)


def confidence_weights(scores: np.ndarray) -> np.ndarray:
    """Y = exp(softmax score) of eq. 4, for the target's scores Psi of the patches."""
    return np.exp(np.asarray(scores, dtype=np.float64))


def unfold(image: np.ndarray, grid: PatchGrid, layout: str, corners: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Psi(U(I, rho, n), alpha) of eq. 1: the patches of a model input (C, H, W) or (H, W, C)
    at `corners` (default: all of the grid's), each resized (bilinear) to the input's own
    size: (len(corners), ...) float32."""
    chw = image if layout == "NCHW" else image.transpose(2, 0, 1)
    channels = chw.shape[0]
    ph, pw = grid.patch
    at = grid.corners if corners is None else corners
    crops = np.stack([chw[:, y:y + ph, x:x + pw] for y, x in at]).reshape(-1, ph, pw)
    patches = kernels.upsample_bilinear(crops, *grid.size).reshape(-1, channels, *grid.size)
    return np.ascontiguousarray(patches if layout == "NCHW" else patches.transpose(0, 2, 3, 1))


def explain_ucag(ctx: Context, base: Callable[..., list[MethodResult]], options: tuple[object, ...],
                 n: int = 6, rho: float = 0.555) -> list[MethodResult]:
    """The base method's `explain` run on each patch with its option records `options`.
    Patches are made a batch at a time and folded in as they are explained (memory
    does not grow with n); the cancellation is checked before every patch."""
    layout = ctx.model.info.input.layout
    grid = patch_grid(ctx.size, n, rho)
    corners = grid.corners
    step = ctx.batch.shape[0]
    ph, pw = grid.patch
    targets = len(ctx.targets)
    folded = np.zeros((targets, *grid.size), np.float64)
    scores = np.empty((len(corners), targets), np.float64)
    used: list[dict[str, int]] = [{} for _ in ctx.targets]
    for first in range(0, len(corners), step):
        ctx.cancellation.check(ctx.passes)
        at = corners[first:first + step]
        patches = unfold(ctx.image, grid, layout, at)
        scores[first:first + len(at)] = ctx.model.batch_scores(patches, ctx.targets)  # eq. 4's Psi
        ctx.passes += len(at)
        weights = confidence_weights(scores[first:first + len(at)])
        for (y, x), patch, weight in zip(at, patches, weights):
            ctx.cancellation.check(ctx.passes)
            sub = Context(model=ctx.model, image=patch, targets=ctx.targets, batch=ctx.batch, progress=ctx.progress,
                          prefetch=ctx.prefetch, cancellation=ctx.cancellation)
            for t, result in enumerate(base(sub, *options)):
                raw = np.asarray(result.saliency, dtype=np.float32)
                place(folded[t], kernels.upsample_bilinear((raw * weight[t])[None], ph, pw)[0], (y, x))
                for name, count in result.masks_used.items():
                    used[t][name] = used[t].get(name, 0) + count
            ctx.passes += sub.passes
    maps = averaged(folded, grid)
    return [MethodResult(saliency=maps[t], block_maps={}, masks_used={"patches": len(corners), **used[t]},
                         details={"patches": len(corners), "patch_size": list(grid.patch),
                                  "alpha": round(ctx.size[0] / ph, 3),
                                  "patch_scores": [round(float(s), 6) for s in scores[:, t]]})
            for t in range(targets)]


def refined(base: Method) -> Method:
    """ucag-<base>: `base` refined by UCAG, with the options of both."""
    def explain(ctx: Context, ucag: UcagOptions, *options: object) -> list[MethodResult]:
        return explain_ucag(ctx, base.explain, options, ucag.ucag_n, ucag.ucag_rho)

    return Method(f"ucag-{base.name}", explain, (UcagOptions, *base.options), f"{base.summary}, refined by UCAG",
                  f"{base.paper}; UCAG, arXiv 2312.14201")


UCAG_BASES = tuple(METHODS)  # the methods registered before this module: every one of them refined
for _base in UCAG_BASES:
    register(refined(METHODS[_base]))
