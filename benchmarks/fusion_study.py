"""The fusion study (issue 15 item 3): SISE's and Ada-SISE's block maps of every photo,
computed once, fused by each variant the papers leave open, each fused map scored by every
metric of the photo.

The SISE paper (Fig. 5 and its text) says: cascade from the shallowest block map to the
deepest; add the next map, then mask with "a binary mask" from Otsu's threshold of that
deeper map. It leaves open whether the block maps are normalised before adding them and
whether the result is normalised. A course lab file of the authors' group (DESIGN.md
section 4) min-max normalises each block map, gates softly with sigmoid(100 (V - t)), and
raises t to 1.5 t when fewer than 10 % of the pixels pass 1.5 t. Variants here:

  gate       hard [V > t] (the paper) or soft sigmoid(100 (V - t)) (the lab file)
  blocks     each block map min-max normalised before the cascade, or left as it is
             (V_l = mean score * m / sum(m): deeper blocks, with fewer and coarser masks,
             are on other scales, so the sum weights blocks by their raw size)
  threshold  Otsu's t, or the lab file's 1.5 t rule

The final normalisation is not a variant: the Explainer min-max normalises every method's
map (AOP eq. 4), so a map and its normalised copy score the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_sise import kernels
from onnx_sise.explainer import to_photo


@dataclass(frozen=True)
class Fusion:
    name: str
    gate: str = "hard"
    normalise_blocks: bool = True
    threshold: str = "otsu"


VARIANTS = (
    Fusion("paper: hard gate, blocks normalised"),
    Fusion("soft gate, blocks normalised", gate="soft"),
    Fusion("lab file: soft gate, 1.5 t rule", gate="soft", threshold="lab"),
    Fusion("hard gate, 1.5 t rule", threshold="lab"),
    Fusion("hard gate, raw blocks", normalise_blocks=False),
    Fusion("soft gate, raw blocks", gate="soft", normalise_blocks=False),
)


def threshold_of(v: np.ndarray, rule: str) -> float:
    """Otsu's t of the map; with rule "lab", 1.5 t where fewer than 10 % of pixels pass 1.5 t."""
    t = kernels.otsu_threshold(v)
    if rule == "lab" and (v > 1.5 * t).mean() < 0.1:
        return 1.5 * t
    return t


def fused(block_maps: np.ndarray, variant: Fusion, sharpness: float = 100.0) -> np.ndarray:
    """The cascade F = V_1; F = (F + V_l) * gate(V_l, t_l) over the block maps (L, H, W),
    shallowest first; constant maps carry nothing and are left out."""
    maps = np.array(block_maps, dtype=np.float32, copy=True)
    informative = np.array([m.max() > m.min() for m in maps])
    if variant.normalise_blocks:
        informative = kernels.minmax_normalize(maps)
    result = None
    for v, useful in zip(maps.astype(np.float64), informative):
        if not useful:
            continue
        if result is None:
            result = v
            continue
        t = threshold_of(v.astype(np.float32), variant.threshold)
        gate = (v > t).astype(np.float64) if variant.gate == "hard" else 1 / (1 + np.exp(-sharpness * (v - t)))
        result = (result + v) * gate
    return np.zeros(maps.shape[1:], np.float32) if result is None else result.astype(np.float32)


def study(explainer, annotations, metric_names, steps, methods=("sise", "ada-sise"), on_image=print) -> dict:
    """{"<method>, <variant>": report entry (evaluate.summarised)} for every method and variant."""
    from onnx_sise.evaluation import METRICS
    from onnx_sise.evaluation.evaluate import map_metrics, summarised
    from onnx_sise.images.decode import read_rgb

    chosen = [METRICS[m] for m in metric_names]
    rows: dict[str, list] = {f"{m}, {v.name}": [] for m in methods for v in VARIANTS}
    for method in methods:
        for item in annotations:
            on_image(f"fusion study: {method} {item.file.name}")
            rgb = read_rgb(item.file)
            result = explainer.explain(rgb, target=item.target, method=method)
            stack = np.stack(list(result.block_maps.values()))
            for variant in VARIANTS:
                saliency = to_photo(fused(stack, variant), rgb.shape[:2])
                rows[f"{method}, {variant.name}"].append(
                    {"file": item.file.name, "target": item.target, "seconds": result.seconds,
                     "passes": result.passes, "zeros": float((saliency == 0).mean()),
                     **map_metrics(explainer, item, rgb, saliency, chosen, steps)})
    return {name: summarised(entry_rows, metric_names) for name, entry_rows in rows.items()}
