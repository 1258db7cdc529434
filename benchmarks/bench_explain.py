"""SISE explanation time against the bare forward passes it needs and an eager-PyTorch SISE.

    python benchmarks/bench_explain.py [--models efficientnet-lite0,resnet50,vgg16] [--repeats 3]
                                       [--provider cpu|cuda|tensorrt] [--precisions fp32,int8] [--batch-size 32]

Per model (efficientnet-lite0 with its real ImageNet weights; resnet50 and vgg16 with
seeded random weights), through the public API only: the masked forward passes of SISE
(mu = 0) and Ada-SISE; seconds per explanation; the overhead ratio (explain time / time
of the same number of bare forward passes through the same session at the same batch
size, the two interleaved in each repeat, median of the per-repeat ratios); the speedup
over an eager-PyTorch SISE of the same formulas on the same masks
(tests/torch_reference.py, same threads); and the extra resident memory of one
explanation of the same target with Ada-SISE's masks and with SISE's (2.4-3x as many),
sampled every 5 ms. `--provider cuda` runs the same on the GPU (IO binding on, onnxruntime-gpu
needed); `--precision fp16` scores the masks with the fp16 variant of the scoring graph.
Appends a table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import skimage
import torch

import onnx_sise
from onnx_sise_export import build_zoo_model, export_zoo, write_scoring_variant

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_levers import calibration, pearson  # noqa: E402
from torch_reference import block_inputs_and_gradients, sise_block_map  # noqa: E402

PHOTO = Path(skimage.__file__).parent / "data" / "coffee.png"


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_passes(explainer: onnx_sise.Explainer, passes: int) -> None:
    """`passes` masked inputs through the same session, in the explainer's batches."""
    spec = explainer.info.input
    shape = (spec.channels, spec.height, spec.width) if spec.layout == "NCHW" else (spec.height, spec.width, spec.channels)
    batch = np.random.default_rng(0).normal(size=(explainer.batch_size, *shape)).astype(np.float32)
    for start in range(0, passes, explainer.batch_size):
        explainer.model.batch_scores(batch[:min(explainer.batch_size, passes - start)], [0])


def eager_sise(model: torch.nn.Module, modules: list[str], x: np.ndarray, target: int, batch: int) -> None:
    _, activations, gradients = block_inputs_and_gradients(model, modules, x, target)
    for a, g in zip(activations, gradients):
        sise_block_map(model, x, a, g, target, batch=batch)


def matmul_gflops() -> float:
    """float32 multiply-add rate of a 4096 x 4096 NumPy matrix product, GFLOP/s (best of 3)."""
    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    return 2 * 4096**3 / min(seconds(lambda: a @ a) for _ in range(3)) / 1e9


def extra_memory(fn: Callable[[], object], before: int) -> int:
    """Peak resident memory while `fn` runs, above `before` (bytes)."""
    process = psutil.Process()
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, process.memory_info().rss) - before


def measure(name: str, path: Path, precision: str, args: argparse.Namespace, tmp: Path,
            reference: onnx_sise.Explainer) -> dict[str, object]:
    """One row: SISE and Ada-SISE with the masked passes in `precision`; `reference` is
    the float32 explainer that the map of a reduced-precision row is compared with."""
    scoring = None
    if precision != "fp32":
        scoring = write_scoring_variant(path, tmp / f"{name}.{precision}.onnx", precision,
                                        calibration(reference) if precision == "int8" else ())
    explainer = onnx_sise.Explainer(path, provider=args.provider, threads=args.threads, batch_size=args.batch_size,
                                    scoring_model=scoring)
    first = explainer.explain(PHOTO)
    target, passes = first.target, first.passes
    explain_s, bare_s, ratios = [], [], []
    for _ in range(args.repeats):
        explain_s.append(seconds(lambda: explainer.explain(PHOTO, target=target)))
        bare_s.append(seconds(lambda: bare_passes(explainer, passes)))
        ratios.append(explain_s[-1] / bare_s[-1])
    ada = explainer.explain(PHOTO, target=target, method="ada-sise")
    ada_s = statistics.median(seconds(lambda: explainer.explain(PHOTO, target=target, method="ada-sise"))
                              for _ in range(args.repeats))
    ada_memory, sise_memory = [], []
    before = psutil.Process().memory_info().rss
    for _ in range(2):
        ada_memory.append(extra_memory(lambda: explainer.explain(PHOTO, target=target, method="ada-sise"), before))
        sise_memory.append(extra_memory(lambda: explainer.explain(PHOTO, target=target), before))
    fidelity = 1.0 if precision == "fp32" else pearson(first.saliency, reference.explain(PHOTO, target=target).saliency)
    return {
        "model": name, "precision": precision, "target": target, "passes": passes,
        "explain_s": statistics.median(explain_s), "bare_s": statistics.median(bare_s),
        "overhead": statistics.median(ratios), "speedup": float("nan"), "ada_passes": ada.passes, "ada_s": ada_s,
        "memory": (max(ada_memory), max(sise_memory)), "fidelity": fidelity, "explainer": explainer,
    }


def eager_seconds(name: str, explainer: onnx_sise.Explainer, target: int, args: argparse.Namespace) -> float:
    """Median seconds of the eager-PyTorch SISE of the same model, photo and target."""
    model, _ = build_zoo_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [t.source.split(":")[0] for t in explainer.info.taps]
    x, _ = explainer.preprocess(PHOTO)
    return statistics.median(seconds(lambda: eager_sise(model, modules, x, target, args.batch_size))
                             for _ in range(args.repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet-lite0,resnet50,vgg16", help="comma-separated zoo names")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, median reported (default: 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="masked inputs per pass (default: 32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime and torch threads (default: all)")
    parser.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu",
                        help="onnxruntime provider (default: cpu)")
    parser.add_argument("--precisions", default="fp32,int8",
                        help="comma-separated masked-pass precisions among fp32, fp16, int8 (default: fp32,int8)")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager-PyTorch comparison")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if not set(precisions) <= {"fp32", "fp16", "int8"}:
        parser.error(f"--precisions takes fp32, fp16 and int8, got {args.precisions}")
    torch.set_num_threads(args.threads)
    device = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(args.provider, "CPUExecutionProvider")
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}, float32 matrix product "
              f"{matmul_gflops():.0f} GFLOP/s; provider: {device} (onnxruntime {ort.__version__}); threads: "
              f"{args.threads}; batch size: {args.batch_size}; photo: coffee.png; median of {args.repeats}; eager "
              f"PyTorch {torch.__version__} (float32) on the CPU")
    print(header)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = Path(tmp) / f"{name}.sise.onnx"
            export_zoo(name, str(path))
            reference = onnx_sise.Explainer(path, provider=args.provider, threads=args.threads,
                                            batch_size=args.batch_size)
            model_rows = [measure(name, path, precision, args, Path(tmp), reference) for precision in precisions]
            if not args.no_eager:
                eager_s = eager_seconds(name, reference, int(model_rows[0]["target"]), args)  # type: ignore[arg-type]
                for row in model_rows:
                    row["speedup"] = eager_s / float(row["explain_s"])
            for row in model_rows:
                mib = [m / 2**20 for m in row["memory"]]  # type: ignore[union-attr]
                print(f"{name} {row['precision']}: {row['passes']} passes, {row['explain_s']:.2f} s/explanation, "
                      f"{row['passes'] / float(row['bare_s']):.1f} bare passes/s, overhead ratio {row['overhead']:.3f}, "
                      f"speedup over eager PyTorch {row['speedup']:.2f}x; Ada-SISE {row['ada_passes']} passes "
                      f"{row['ada_s']:.2f} s; extra memory {mib[0]:.1f} MiB ({row['ada_passes']} masks) / "
                      f"{mib[1]:.1f} MiB ({row['passes']} masks); map r with float32 {row['fidelity']:.3f}")
            rows += model_rows
    command = (f"python benchmarks/bench_explain.py --models {args.models} --repeats {args.repeats} --batch-size "
               f"{args.batch_size} --provider {args.provider} --precisions {args.precisions}"
               + (" --no-eager" if args.no_eager else ""))
    batch_mib = 0.0
    if rows:
        spec = rows[0]["explainer"].info.input  # type: ignore[union-attr]
        batch_mib = args.batch_size * spec.channels * spec.height * spec.width * 4 / 2**20
    lines = [f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n", f"{header}\n",
             "| model | precision | SISE passes | s / explanation | bare passes / s | overhead ratio | "
             "speedup vs eager PyTorch SISE | Ada-SISE passes | Ada-SISE s | time saved | "
             f"peak extra MiB, Ada-SISE / SISE masks (one batch = {batch_mib:.1f} MiB) | map r with float32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mib = [m / 2**20 for m in r["memory"]]  # type: ignore[union-attr]
        saved = 100 * (1 - float(r["ada_s"]) / float(r["explain_s"]))
        lines.append(f"| {r['model']} | {r['precision']} | {r['passes']} | {r['explain_s']:.2f} | "
                     f"{r['passes'] / float(r['bare_s']):.1f} | {r['overhead']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['ada_passes']} | {r['ada_s']:.2f} | {saved:.0f} % | {mib[0]:.1f} ({r['ada_passes']}) / "
                     f"{mib[1]:.1f} ({r['passes']}) | {r['fidelity']:.3f} |")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
