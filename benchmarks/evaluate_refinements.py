"""SIGCAM against its bases (WGradCAM, Grad-CAM) and UCAG-refined against plain Grad-CAM,
WGradCAM and SISE: deletion / insertion AUC, pointing game and seconds per image on the
real photos with hand-drawn boxes (benchmarks/real_photos.json), EfficientNet-Lite0.

    python benchmarks/evaluate_refinements.py [--model lite0.sise.onnx] [--methods ...] [--steps 100]

Appends the table and the command to benchmarks/RESULTS.md.
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
from photo_set import FIRST_FIVE, photo_set
from quality import HERE, annotated_cli_run

from onnx_sise.evaluation.report import table

METHODS = ("gradcam", "wgradcam", "sigcam", "sise", "ucag-gradcam", "ucag-wgradcam", "ucag-sise")
METRICS = ("deletion", "insertion", "pointing", "ebpg")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"(default: {','.join(METHODS)})")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--photos", default=",".join(FIRST_FIVE),
                        help=f"photos of benchmarks/photo_set.py with boxes (default: {','.join(FIRST_FIVE)})")
    parser.add_argument("--folder", type=Path, default=None, help="cache folder of the photos (default: photo_set's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [name for name in args.photos.split(",") if name]
        photos = [p for p in photo_set(args.folder) if p.path.name in chosen]
        started = time.perf_counter()
        report = annotated_cli_run(Path(tmp), photos, args.model,
                                   ["evaluate", "--methods", args.methods, "--metrics", ",".join(METRICS),
                                    "--steps", str(args.steps)], args.threads, "evaluation.json")
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores (shared with other jobs while measured); "
              f"provider: CPUExecutionProvider (onnxruntime {ort.__version__}); {len(chosen)} photos ({', '.join(chosen)}); "
              f"total {time.perf_counter() - started:.0f} s")
    command = " ".join(["python", "benchmarks/evaluate_refinements.py", *sys.argv[1:]])
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nEfficientNet-Lite0 (real ImageNet weights), "
                     f"the photos and hand-drawn boxes of benchmarks/real_photos.json; SIGCAM and UCAG with the "
                     f"papers' defaults. {header}\n\n{table(report, list(METRICS))}\n")
    per_image = {m: [(r["file"], round(r["deletion"], 4)) for r in report[m]["images"]] for m in report}
    print(json.dumps(per_image))


if __name__ == "__main__":
    run()
