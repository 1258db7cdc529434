"""SISE phase 4: the fusion module (SISE Fig. 5 and its text)."""

from __future__ import annotations

import numpy as np

from ... import kernels

GATES = ("hard", "soft")


def fuse_block_maps(block_maps: np.ndarray, gate: str = "hard", sharpness: float = 100.0) -> np.ndarray:
    """Cascade of fusion blocks over the block maps (L, H, W), shallowest first.

    Exact choices:
      1. Every block map is min-max normalised to [0, 1]; a constant map (a block that
         kept no informative mask) carries nothing and is left out.
      2. F = V_1 (shallowest). For each deeper block l: F = (F + V_l) * B_l, where
         B_l = [V_l > t_l] with t_l Otsu's threshold of V_l on a 256-bin histogram over
         [min, max] (skimage.filters.threshold_otsu): the paper's "addition" block
         followed by masking with the binarised deeper map.
         gate="soft" uses B_l = sigmoid(sharpness * (V_l - t_l)) instead (as in a TF2
         lab file of the authors' group, sharpness 100).
      3. The result is min-max normalised to [0, 1].
    Returns (H, W) float32.
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    return kernels.fuse_cascade(block_maps, gate=gate, sharpness=sharpness)
