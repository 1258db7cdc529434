"""Every method x every metric on the real photos of benchmarks/photo_set.py (photos from
packages on PyPI, boxes hand-checked in benchmarks/real_photos.json), on EfficientNet-Lite0.

    python benchmarks/evaluate_real_photos.py [--model lite0.sise.onnx] [--steps 100] [--folder F]

The photos with boxes get every metric; those without (no ImageNet class visible) get
the model-truth metrics only, in a second table. Appends both tables and the command to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
from photo_set import MANIFEST, manifest, photo_set

from onnx_sise.cli import main
from onnx_sise.evaluation import METRICS, MODEL
from onnx_sise.evaluation.report import table
from onnx_sise.methods import UCAG_BASES

HERE = Path(__file__).resolve().parent


def model_or_export(model: Path | None, folder: Path) -> Path:
    """`model`, or an explainable Lite0 exported into `folder`."""
    if model is not None:
        return model
    from onnx_sise_export import export_zoo

    path = folder / "lite0.sise.onnx"
    export_zoo("efficientnet-lite0", str(path))
    return path


def evaluate(model: Path, photos: Path, entries: list[dict], metrics: list[str], args: argparse.Namespace,
             out: Path) -> dict:
    """`evaluate` of every UCAG base method with `metrics` on the manifest `entries`."""
    out.mkdir()
    annotations = out / "annotations.json"
    annotations.write_text(json.dumps({"images": entries}), encoding="utf-8")
    code = main(["evaluate", str(model), "--images", str(photos), "--annotations", str(annotations),
                 "--methods", ",".join(UCAG_BASES), "--metrics", ",".join(metrics),
                 "--steps", str(args.steps), "--rise-masks", str(args.rise_masks), "--out", str(out / "report")])
    if code:
        raise SystemExit(code)
    return json.loads((out / "report" / "evaluation.json").read_text())


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks (default: 2000)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="cache folder of the photos (default: photo_set's, ~/.cache/onnx_sise/photos)")
    args = parser.parse_args()
    photos = photo_set(args.folder)[0].path.parent
    entries = manifest(MANIFEST)["images"]
    boxed = [e for e in entries if e.get("boxes")]
    unboxed = [e for e in entries if not e.get("boxes")]
    model_metrics = [m for m in METRICS if METRICS[m].truth == MODEL]
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_export(args.model, Path(tmp))
        started = time.perf_counter()
        full = evaluate(model, photos, boxed, list(METRICS), args, Path(tmp) / "boxed")
        partial = evaluate(model, photos, unboxed, model_metrics, args, Path(tmp) / "unboxed") if unboxed else None
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores; provider: CPUExecutionProvider "
              f"(onnxruntime {ort.__version__}); {len(entries)} photos; total {time.perf_counter() - started:.0f} s")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/evaluate_real_photos.py --steps {args.steps} "
            f"--rise-masks {args.rise_masks}`\n\nEfficientNet-Lite0 (real ImageNet weights), the photos of "
            f"benchmarks/photo_set.py and the hand-checked boxes of benchmarks/real_photos.json. {header}\n\n"
            f"Every metric, the {len(boxed)} photos with boxes:\n\n{table(full, list(METRICS))}\n")
    if partial is not None:
        text += (f"\nModel-truth metrics, the {len(unboxed)} photos where no ImageNet class is visible (target: "
                 f"Lite0's top-1):\n\n{table(partial, model_metrics)}\n")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    run()
