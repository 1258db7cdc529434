"""Every method x every metric on real photos shipped with scikit-image and matplotlib,
with boxes drawn by hand (benchmarks/real_photos.json), on EfficientNet-Lite0.

    python benchmarks/evaluate_real_photos.py [--model lite0.sise.onnx] [--steps 100]

Appends the table and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib
import onnxruntime as ort
import skimage

from onnx_sise.cli import main
from onnx_sise.evaluation import METRICS
from onnx_sise.evaluation.report import table
from onnx_sise.methods import UCAG_BASES

HERE = Path(__file__).resolve().parent
SOURCES = {
    "coffee.png": Path(skimage.__file__).parent / "data" / "coffee.png",
    "chelsea.png": Path(skimage.__file__).parent / "data" / "chelsea.png",
    "rocket.jpg": Path(skimage.__file__).parent / "data" / "rocket.jpg",
    "motorcycle_left.png": Path(skimage.__file__).parent / "data" / "motorcycle_left.png",
    "grace_hopper.jpg": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
}


def photos_and_model(folder: Path, names: list[str], model: Path | None) -> tuple[Path, Path]:
    """The named photos copied into folder/photos, and `model` or an explainable Lite0
    exported into `folder`."""
    photos = folder / "photos"
    photos.mkdir()
    for name in names:
        shutil.copy(SOURCES[name], photos / name)
    if model is None:
        from onnx_sise_export import export_zoo

        model = folder / "lite0.sise.onnx"
        export_zoo("efficientnet-lite0", str(model))
    return photos, model


def annotated_cli_run(folder: Path, entries: list[dict], model: Path | None, argv: list[str], threads: int | None,
                      report_name: str) -> dict:
    """`python -m onnx_sise <argv[0]> MODEL --images ... --annotations ... <argv[1:]>` over
    the photos of `entries` (real_photos.json's) copied into `folder`, with `model` or a
    Lite0 exported there; the report JSON `report_name` it wrote."""
    photos, model = photos_and_model(folder, [e["file"] for e in entries], model)
    annotations = folder / "annotations.json"
    annotations.write_text(json.dumps({"images": entries}))
    out = folder / "out"
    command = [argv[0], str(model), "--images", str(photos), "--annotations", str(annotations), *argv[1:],
               "--out", str(out), *(["--threads", str(threads)] if threads else [])]
    code = main(command)
    if code:
        raise SystemExit(code)
    return json.loads((out / report_name).read_text())


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks (default: 2000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos, model = photos_and_model(Path(tmp), list(SOURCES), args.model)
        out = Path(tmp) / "out"
        started = time.perf_counter()
        code = main(["evaluate", str(model), "--images", str(photos), "--annotations", str(HERE / "real_photos.json"),
                     "--methods", ",".join(UCAG_BASES), "--metrics", ",".join(METRICS),
                     "--steps", str(args.steps), "--rise-masks", str(args.rise_masks), "--out", str(out)])
        if code:
            raise SystemExit(code)
        report = json.loads((out / "evaluation.json").read_text())
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores; provider: CPUExecutionProvider "
              f"(onnxruntime {ort.__version__}); 5 photos; total {time.perf_counter() - started:.0f} s")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/evaluate_real_photos.py --steps {args.steps} "
                     f"--rise-masks {args.rise_masks}`\n\nEfficientNet-Lite0 (real ImageNet weights), the photos and "
                     f"hand-drawn boxes of benchmarks/real_photos.json. {header}\n\n"
                     f"{table(report, list(METRICS))}\n")


if __name__ == "__main__":
    run()
