"""What a method returns for one target, before resizing to the photo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MethodResult:
    """saliency: (H, W) at the model's input size, any range (the explainer rescales it
    to [0, 1]). block_maps: per tap, the map the method built there (SISE: V of eq. 12 at
    input size; CAM methods: the map at the tap's own size, before upsampling)."""

    saliency: np.ndarray
    block_maps: dict[str, np.ndarray]
    masks_selected: dict[str, int] = field(default_factory=dict)
    masks_used: dict[str, int] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)
