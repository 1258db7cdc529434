"""Stability of each method's map under harmless changes (resize method, JPEG at quality
90, a 1-pixel shift; onnx_sise/evaluation/stability.py) on the photos of
benchmarks/photo_set.py, EfficientNet-Lite0; and, for SISE and Ada-SISE with the
fusion's soft gate and / or the soft selection (the robustness options of docs/design.md
section 6), their stability and the faithfulness metrics beside the papers' defaults.

    python benchmarks/stability.py [--model lite0.sise.onnx] [--photos N] [--methods a,b,...]
                                   [--rise-masks 2000] [--threads T] [--no-variants]

Appends the tables and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
from photo_set import photo_set
from quality import BASE_METHODS, annotations_of, model_or_export

from onnx_sise import Explainer
from onnx_sise.evaluation import METRICS
from onnx_sise.evaluation.annotations import load_annotations
from onnx_sise.evaluation.evaluate import evaluate
from onnx_sise.evaluation.report import table
from onnx_sise.evaluation.stability import evaluate_stability, stability_table

HERE = Path(__file__).resolve().parent
SOFT = ("sise", "ada-sise")  # also run with the robustness options
VARIANTS = {"": {}, " --fusion hard": {"fusion": "hard"}, " --sise-selection soft": {"sise_selection": "soft"},
            " --fusion hard --sise-selection soft": {"fusion": "hard", "sise_selection": "soft"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--photos", type=int, default=None, help="the first N photos of photo_set.py (default: all)")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache (default: photo_set's)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks, seed 0 (default: 2000)")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    parser.add_argument("--methods", default=",".join(BASE_METHODS),
                        help="default: every method but SIGCAM and the UCAG refinements")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip SISE's and Ada-SISE's option variants and their faithfulness (default: run them)")
    args = parser.parse_args()
    chosen = photo_set(args.folder)[:args.photos]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_export(args.model, Path(tmp))
        photos = chosen[0].path.parent
        explainer = Explainer(model, threads=args.threads)
        annotations = load_annotations(annotations_of(chosen, Path(tmp)), photos, explainer.info.num_classes, True)
        options = {"rise_masks": args.rise_masks, "seed": 0}
        methods = args.methods.split(",")
        report = evaluate_stability(explainer, annotations, methods, on_image=print, **options)
        faithfulness = {}
        for method in [] if args.no_variants else [m for m in SOFT if m in methods]:
            for suffix, variant in VARIANTS.items():
                if variant:
                    found = evaluate_stability(explainer, annotations, [method], on_image=print, **variant)
                    report[method + suffix] = found[method]
                found = evaluate(explainer, annotations, [method], list(METRICS), steps=args.steps, **variant)
                faithfulness[method + suffix] = found[method]
    names = ", ".join(p.path.name for p in chosen)
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores; provider: CPUExecutionProvider "
              f"(onnxruntime {ort.__version__}); {len(chosen)} photos ({names}); total "
              f"{time.perf_counter() - started:.0f} s")
    command = " ".join(["python benchmarks/stability.py", *sys.argv[1:]])
    text = (f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\n"
            "EfficientNet-Lite0; each map against the map of the same photo changed harmlessly: resized with "
            "INTER_LINEAR instead of INTER_AREA, re-encoded as JPEG at quality 90, moved 1 pixel down and right "
            "(the map moved back, 2-pixel border cropped); maps at 224 x 224. Mean over the photos of Pearson r, "
            "Spearman rho and ||S' - S|| / ||S||, and of the max over the changes of the latter (max-sensitivity, "
            f"Yeh et al. 2019). RISE: {args.rise_masks} masks, seed 0. {header}\n\n"
            f"{stability_table(report)}\n" + (f"\nFaithfulness of SISE and Ada-SISE with our default (soft gate), the "
                                              f"paper's hard gate and the soft selection, same photos:\n\n"
                                              f"{table(faithfulness, list(METRICS))}\n" if faithfulness else ""))
    print(text)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
