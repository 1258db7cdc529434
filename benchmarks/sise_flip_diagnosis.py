"""Why SISE's and Ada-SISE's maps move when the photo is resized with INTER_LINEAR
instead of INTER_AREA (issue 15 item 6): the feature maps that enter or leave the
selection per block, their distance to the threshold, their weight in the block map, and
the final map's correlation when one stage at a time is taken from the other input's run
(selection, the fusion's Otsu gates, the block maps' normalisation).

    python benchmarks/sise_flip_diagnosis.py [--model lite0.sise.onnx] [--photo coffee.png] [--target 967]

Prints Markdown (docs/design.md section 6 quotes it); writes nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from photo_set import photo_set
from quality import model_or_export
from skimage.filters import threshold_otsu

from onnx_sise import Explainer
from onnx_sise.images.decode import read_rgb
from onnx_sise.images.model_input import model_input
from onnx_sise.methods import Context
from onnx_sise.methods.sise.method import (
    adaptive_threshold,
    average_gradients,
    block_maps,
    select_adaptive,
    select_positive,
)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def normalised(v: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = float(v.min()) if lo is None else lo
    hi = float(v.max()) if hi is None else hi
    return (v.astype(np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(v.shape)


def fuse(stack: np.ndarray, gates: list[np.ndarray] | None = None,
         ranges: list[tuple[float, float]] | None = None) -> np.ndarray:
    """SISE Fig. 5 as methods/sise/fusion.py (hard gate), with the gates B_l or the
    normalisation ranges optionally given (taken from the other input's run)."""
    fused = None
    for level, v in enumerate(stack):
        unit = normalised(v, *(ranges[level] if ranges else (None, None)))
        if fused is None:
            fused = unit
            continue
        gate = gates[level] if gates else unit > threshold_otsu(normalised(v))
        fused = (fused + unit) * gate
    return normalised(fused)


def gates_of(stack: np.ndarray) -> list[np.ndarray]:
    return [normalised(v) > threshold_otsu(normalised(v)) for v in stack]


class Run:
    """One input's SISE stages: alphas, selections, block maps and the fused map."""

    def __init__(self, explainer: Explainer, x: np.ndarray, target: int, adaptive: bool) -> None:
        self.ctx = Context(model=explainer.model, image=x, targets=[target],
                           batch=np.empty((explainer.batch_size, *x.shape), np.float32))
        self.alphas = [average_gradients(f.gradients) for f in self.ctx.score_features(target)]
        self.adaptive = adaptive
        self.selections = [select_adaptive(a) if adaptive else select_positive(a) for a in self.alphas]
        self.stack = self.maps(self.selections)
        self.fused = fuse(self.stack)

    def maps(self, selections: list[np.ndarray]) -> np.ndarray:
        return np.stack([block_maps(self.ctx, b, [s])[0][0] if s.size else np.zeros(self.ctx.size, np.float32)
                         for b, s in enumerate(selections)])

    def cut(self, block: int) -> float:
        """The threshold on v_k = alpha_k / max alpha: 0 for SISE (mu = 0), Ada-SISE's Otsu cut."""
        v = self.alphas[block] / self.alphas[block].max()
        return adaptive_threshold(v[v > 0]) if self.adaptive else 0.0


def mass_share(run: Run, block: int, flipped: np.ndarray) -> float:
    """Share of the block map's mass (sum of V_l) from the flipped maps: V_l is a mean of
    contributions, so share = n_flipped * sum(V(flipped)) / (n * sum(V(all)))."""
    selection = run.selections[block]
    if flipped.size == 0 or selection.size == 0:
        return 0.0
    part = block_maps(run.ctx, block, [flipped])[0][0]
    return float(flipped.size * part.sum() / (selection.size * run.stack[block].sum()))


def diagnose(explainer: Explainer, rgb: np.ndarray, target: int, method: str) -> list[str]:
    spec = explainer.info.input
    a_x, b_x = (model_input(rgb, spec, resize=r).x for r in ("area", "linear"))
    a, b = (Run(explainer, x, target, method == "ada-sise") for x in (a_x, b_x))
    lines = [f"### {method}: INTER_AREA (A) vs INTER_LINEAR (B), class {target}", "",
             "| block | r(alpha A, B) | kept A / B | entered | left | v_k of flipped maps, A -> B | cut A / B | "
             "flipped share of V_l (A / B) | r(V_l) | r(V_l) with A's selection | gate B_l differs (% px) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    b_with_a_selection = b.maps(a.selections)
    gates_a, gates_b = gates_of(a.stack), gates_of(b.stack)
    for level in range(len(a.alphas)):
        entered = np.setdiff1d(b.selections[level], a.selections[level])
        left = np.setdiff1d(a.selections[level], b.selections[level])
        va, vb = (run.alphas[level] / run.alphas[level].max() for run in (a, b))
        flips = np.concatenate([entered, left])
        shown = ", ".join(f"{va[k]:+.3f}->{vb[k]:+.3f}" for k in flips[np.argsort(-np.abs(va[flips] - a.cut(level)))][:4])
        lines.append(f"| {level} | {pearson(a.alphas[level], b.alphas[level]):.3f} | {a.selections[level].size} / {b.selections[level].size} | {entered.size} | "
                     f"{left.size} | {shown or '-'} | {a.cut(level):.3f} / {b.cut(level):.3f} | "
                     f"{mass_share(a, level, left):.2f} / {mass_share(b, level, entered):.2f} | "
                     f"{pearson(a.stack[level], b.stack[level]):.3f} | "
                     f"{pearson(a.stack[level], b_with_a_selection[level]):.3f} | "
                     f"{100 * np.mean(gates_a[level] != gates_b[level]) if level else 0:.1f} |")
    ranges_a = [(float(v.min()), float(v.max())) for v in a.stack]
    swaps = {
        "none (B as it is)": b.fused,
        "selection from A": fuse(b_with_a_selection),
        "fusion gates from A": fuse(b.stack, gates=gates_of(a.stack)),
        "normalisation ranges from A": fuse(b.stack, ranges=ranges_a),
        "selection and gates from A": fuse(b_with_a_selection, gates=gates_of(a.stack)),
        "soft fusion gate, both": None,
    }
    lines += ["", "| stage taken from A's run | r(final map A, B) |", "|---|---|"]
    for name, fused in swaps.items():
        if fused is None:
            from onnx_sise.methods.sise.fusion import fuse_block_maps

            value = pearson(fuse_block_maps(a.stack, "soft"), fuse_block_maps(b.stack, "soft"))
        else:
            value = pearson(a.fused, fused)
        lines.append(f"| {name} | {value:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--photo", default="coffee.png", help="a photo of photo_set.py (default: coffee.png)")
    parser.add_argument("--target", type=int, default=967, help="class (default: 967)")
    parser.add_argument("--methods", default="sise,ada-sise", help="sise, ada-sise or both (default: both)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_export(args.model, Path(tmp))
        explainer = Explainer(model)
        rgb = read_rgb(next(p.path for p in photo_set() if p.path.name == args.photo))
        for method in args.methods.split(","):
            print("\n".join(diagnose(explainer, rgb, args.target, method)) + "\n", flush=True)


if __name__ == "__main__":
    main()
