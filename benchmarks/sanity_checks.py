"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): the cascading
randomisation of EfficientNet-Lite0's weights (`python -m onnx_sise sanity`), each method's
maps on the damaged model against its maps on the trained one, over the real photos of
benchmarks/real_photos.json.

    python benchmarks/sanity_checks.py [--model lite0.sise.onnx] [--photos 5] [--depths 1,2,all]

Appends the table (methods x cascade depths: mean Spearman / mean SSIM) and the command to
benchmarks/RESULTS.md. A method whose maps stay close to 1 / 1 when the weights are gone
is not explaining the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
from evaluate_real_photos import HERE, photos_and_model

from onnx_sise.cli import main
from onnx_sise.evaluation.report import sanity_table

METHODS = ("gradcam", "gradcam++", "wgradcam", "score-cam", "rise", "sise", "ada-sise")
DEPTHS = "1,2,all"  # the classifier, + the head convolution, every layer: ~15 min on 2 cores for 5 photos


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"(default: {','.join(METHODS)})")
    parser.add_argument("--depths", default=DEPTHS, help=f"cascade depths, layers from the top (default: {DEPTHS})")
    parser.add_argument("--photos", type=int, default=5, help="the first N photos of real_photos.json (default: 5)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks (default: 2000)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    args = parser.parse_args()
    entries = json.loads((HERE / "real_photos.json").read_text())["images"][:args.photos]
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [e["file"] for e in entries]
        photos, model = photos_and_model(Path(tmp), chosen, args.model)
        annotations = Path(tmp) / "annotations.json"
        annotations.write_text(json.dumps({"images": entries}))
        out = Path(tmp) / "out"
        started = time.perf_counter()
        argv = ["sanity", str(model), "--images", str(photos), "--annotations", str(annotations),
                "--methods", args.methods, "--depths", args.depths, "--rise-masks", str(args.rise_masks),
                "--out", str(out)]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        code = main(argv)
        if code:
            raise SystemExit(code)
        report = json.loads((out / "sanity.json").read_text())
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores (shared with other jobs while measured); "
              f"provider: CPUExecutionProvider (onnxruntime {ort.__version__}); {len(chosen)} photos "
              f"({', '.join(chosen)}), each explained for its annotated class; weights re-drawn from N(0, std^2) of "
              f"each tensor, seed 0, top layer first; total {time.perf_counter() - started:.0f} s")
    scores = {d: [round(r["score"], 4) for r in next(iter(report["methods"].values()))[d]["images"]]
              for d in next(iter(report["methods"].values()))}
    command = " ".join(["python", "benchmarks/sanity_checks.py", *sys.argv[1:]])
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nCascading randomisation (Adebayo et al. "
                     f"2018) of EfficientNet-Lite0 (real ImageNet weights, {len(report['layers'])} layers): mean "
                     f"Spearman rank correlation / mean SSIM of each method's map against its map on the trained "
                     f"model (1 / 1 = unchanged). {header}. The damaged model's score of the class, per photo: "
                     f"{json.dumps(scores)}.\n\n{sanity_table(report)}\n")


if __name__ == "__main__":
    run()
