"""CPU levers of the explain path, each measured against its alternative in the same run
(settings interleaved, medians), on one model.

    python benchmarks/bench_levers.py [--model efficientnet-lite0] [--repeats 3]

Levers: mask preparation overlapped with inference (prefetch on/off), onnxruntime
threads, graph optimisation level and memory arena (bare forward passes at batch 32),
and the batch size. Appends a table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage

import onnx_sise
from onnx_sise_export import export_zoo

HERE = Path(__file__).resolve().parent
PHOTO = Path(skimage.__file__).parent / "data" / "coffee.png"


def interleaved(settings: dict[str, callable], repeats: int) -> dict[str, float]:  # type: ignore[valid-type]
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, fn in settings.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bare_session(path: Path, threads: int, level: ort.GraphOptimizationLevel, arena: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    options.enable_cpu_mem_arena = arena
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0", help="zoo name (default: efficientnet-lite0)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (default: 3)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.sise.onnx"
        export_zoo(args.model, str(path))
        explainers = {f"prefetch {'on' if p else 'off'}": onnx_sise.Explainer(path, prefetch=p) for p in (True, False)}
        explainers.update({f"batch {b}": onnx_sise.Explainer(path, batch_size=b) for b in (16, 64)})
        for e in explainers.values():
            e.explain(PHOTO)
        medians = interleaved({k: (lambda e=e: e.explain(PHOTO)) for k, e in explainers.items()}, args.repeats)
        rows += [(f"SISE explanation, {k}", v) for k, v in medians.items()]
        batch = np.random.default_rng(0).normal(size=(32, 3, 224, 224)).astype(np.float32)
        sessions = {
            f"{cores} threads, ALL, arena": bare_session(path, cores, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, True),
            "1 thread, ALL, arena": bare_session(path, 1, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, True),
            f"{cores} threads, BASIC, arena": bare_session(path, cores, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, True),
            f"{cores} threads, ALL, no arena": bare_session(path, cores, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, False),
        }
        for s in sessions.values():
            s.run(["batch_scores"], {"masked_batch": batch})
        medians = interleaved({k: (lambda s=s: [s.run(["batch_scores"], {"masked_batch": batch}) for _ in range(4)])
                               for k, s in sessions.items()}, args.repeats)
        rows += [(f"128 bare passes (4 x 32), {k}", v) for k, v in medians.items()]
    for name, seconds in rows:
        print(f"{name}: {seconds:.2f} s")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/bench_levers.py --model {args.model} "
                     f"--repeats {args.repeats}`\n\n{args.model}, coffee.png, CPUExecutionProvider "
                     f"(onnxruntime {ort.__version__}), {cores} cores; settings interleaved, medians.\n\n"
                     "| setting | seconds |\n|---|---|\n" + "\n".join(f"| {n} | {s:.2f} |" for n, s in rows) + "\n")


if __name__ == "__main__":
    main()
