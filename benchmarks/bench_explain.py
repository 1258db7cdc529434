"""SISE explanation time against the bare forward passes it needs and an eager-PyTorch SISE.

    python benchmarks/bench_explain.py [--models efficientnet-lite0,resnet50] [--repeats 3]

Reports per model, from one run: masked forward passes, seconds per explanation, the
overhead ratio (explain time / time of the same number of bare forward passes through
the same session at the same batch size), the speedup over an eager-PyTorch SISE of
the same formulas (tests/torch_reference.py), Ada-SISE's passes and time, and the peak
traced memory (NumPy and Python allocations) of scoring 256 and 512 masks of the deepest
block. Appends a table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage
import torch

import onnx_sise
from onnx_sise.methods.context import Context
from onnx_sise.methods.sise import block_maps
from onnx_sise_export import build_zoo_model, export_zoo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from torch_reference import block_inputs_and_gradients, sise_block_map  # noqa: E402

PHOTO = Path(skimage.__file__).parent / "data" / "coffee.png"


def median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_passes(explainer: onnx_sise.Explainer, passes: int) -> None:
    g = explainer.info.graph
    batch = np.random.default_rng(0).normal(size=(explainer.batch_size, 3, 224, 224)).astype(np.float32)
    for start in range(0, passes, explainer.batch_size):
        explainer.model.session.run([g.batch_scores], {g.masked_batch: batch[:min(explainer.batch_size, passes - start)]})


def eager_sise(model: torch.nn.Module, modules: list[str], x: np.ndarray, target: int, batch: int) -> None:
    _, activations, gradients = block_inputs_and_gradients(model, modules, x, target)
    for a, g in zip(activations, gradients):
        sise_block_map(model, x, a, g, target, batch=batch)


def ada_sise_seconds(explainer: onnx_sise.Explainer, target: int, repeats: int) -> tuple[int, float]:
    result = explainer.explain(PHOTO, target=target, method="ada-sise")
    return result.passes, median_seconds(lambda: explainer.explain(PHOTO, target=target, method="ada-sise"), repeats)


def peak_memory(explainer: onnx_sise.Explainer, target: int, counts: tuple[int, int] = (256, 512)) -> list[int]:
    """Peak traced memory (NumPy and Python) of scoring `count` masks of the deepest block."""
    x, _ = explainer.preprocess(PHOTO)
    ctx = Context(model=explainer.model, image=x, targets=[target],
                  batch=np.empty((explainer.batch_size, *x.shape), np.float32))
    deepest = ctx.features(target, "score")[-1]
    flat = deepest.activations.reshape(deepest.activations.shape[0], -1)
    varying = np.flatnonzero(flat.max(axis=1) > flat.min(axis=1))
    peaks = []
    for count in counts:
        tracemalloc.start()
        block_maps(ctx, len(explainer.info.taps) - 1, [varying[:count]])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet-lite0", help="comma-separated zoo names (default: efficientnet-lite0)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, median reported (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="masked inputs per pass (default: 32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime and torch threads (default: all)")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager-PyTorch comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}; "
              f"provider: CPUExecutionProvider (onnxruntime {ort.__version__}); threads: {args.threads}; "
              f"batch size: {args.batch_size}; photo: coffee.png; median of {args.repeats}")
    print(header)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = Path(tmp) / f"{name}.sise.onnx"
            info = export_zoo(name, str(path))
            explainer = onnx_sise.Explainer(path, threads=args.threads, batch_size=args.batch_size)
            result = explainer.explain(PHOTO)
            passes = result.forward_passes
            explain_s = median_seconds(lambda: explainer.explain(PHOTO, target=result.target), args.repeats)
            bare_s = median_seconds(lambda: bare_passes(explainer, passes), args.repeats)
            ada_passes, ada_s = ada_sise_seconds(explainer, result.target, args.repeats)
            peaks = peak_memory(explainer, result.target)
            row = {"model": name, "passes": passes, "explain_s": explain_s, "bare_s": bare_s,
                   "overhead": explain_s / bare_s, "speedup": float("nan"), "ada_passes": ada_passes, "ada_s": ada_s,
                   "peaks": peaks}
            if not args.no_eager:
                model, _ = build_zoo_model(name)
                for p in model.parameters():
                    p.requires_grad_(False)
                modules = [t.source.split(":")[0] for t in info.taps]
                x, _ = explainer.preprocess(PHOTO)
                eager_s = median_seconds(lambda: eager_sise(model, modules, x, result.target, args.batch_size),
                                         args.repeats)
                row["speedup"] = eager_s / explain_s
            print(f"{name}: {passes} passes, {explain_s:.2f} s/explanation, overhead ratio {row['overhead']:.3f}, "
                  f"speedup over eager PyTorch {row['speedup']:.2f}x; Ada-SISE {ada_passes} passes {ada_s:.2f} s; "
                  f"peak traced memory 256 vs 512 masks: {peaks[0] / 2**20:.1f} / {peaks[1] / 2**20:.1f} MiB")
            rows.append(row)
    lines = [f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/bench_explain.py --models {args.models} "
             f"--repeats {args.repeats} --batch-size {args.batch_size}`\n", f"{header}\n",
             "| model | SISE passes | s / explanation | overhead ratio | speedup vs eager PyTorch SISE | "
             "Ada-SISE passes | Ada-SISE s | time saved | peak MiB, 256 / 512 masks |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['passes']} | {r['explain_s']:.2f} | {r['overhead']:.3f} | {r['speedup']:.2f}x | "
              f"{r['ada_passes']} | {r['ada_s']:.2f} | {100 * (1 - r['ada_s'] / r['explain_s']):.0f} % | "
              f"{r['peaks'][0] / 2**20:.1f} / {r['peaks'][1] / 2**20:.1f} |" for r in rows]
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
