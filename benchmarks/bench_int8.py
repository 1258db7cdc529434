"""int8 that keeps the map (issue 16 item 3): per int8 variant of the scoring graph (the
first N convolutions kept in float, `write_scoring_variant(..., float_layers=N)`), the
SISE and Ada-SISE maps (hard and soft fusion gates) against float32 on the photo set, and
the speed of the masked passes against float32.

    python benchmarks/bench_int8.py --model lite0.sise.onnx --folder PHOTOS --calibrate a.jpg b.jpg ...
        [--float-layers 0,12] [--photos 34] [--resnet50] [--threads 2]

The calibration photos should not be in the photo set. Per variant: the worst and median
over the photos of the lowest r of the four maps (SISE/Ada-SISE x hard/soft), and the
masked passes per second and SISE seconds (top class of the first calibration photo)
against float32 (runs taking turns, medians).
--resnet50 adds the speed of a random-weight ResNet-50 (export_zoo, speed only).
Prints the machine and appends the table and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import onnx_sise
from onnx_sise.methods.sise.fusion import fuse_block_maps
from onnx_sise_export import calibration_batches, export_zoo, write_scoring_variant

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_preparation import machine  # noqa: E402
from photo_set import photo_set  # noqa: E402

MAPS = [(method, gate) for method in ("sise", "ada-sise") for gate in ("hard", "soft")]


def four_maps(explainer: onnx_sise.Explainer, photo: Path, target: int) -> dict[tuple[str, str], np.ndarray]:
    """SISE and Ada-SISE saliency, each with the hard and the soft gate of the fusion (one run per method)."""
    out = {}
    for method in ("sise", "ada-sise"):
        result = explainer.explain(photo, target, method)
        stack = np.stack(list(result.block_maps.values()))
        for gate in ("hard", "soft"):
            out[(method, gate)] = fuse_block_maps(stack, gate=gate)
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def passes_per_second(explainers: dict[str, onnx_sise.Explainer], batch: np.ndarray, rounds: int) -> dict[str, float]:
    """Masked passes per second of each explainer's scoring graph, runs taking turns, median of `rounds`."""
    times: dict[str, list[float]] = {name: [] for name in explainers}
    for explainer in explainers.values():
        explainer.model.batch_scores(batch, [0])  # warm up
    for _ in range(rounds):
        for name, explainer in explainers.items():
            start = time.perf_counter()
            explainer.model.batch_scores(batch, [0])
            times[name].append(time.perf_counter() - start)
    return {name: batch.shape[0] / statistics.median(t) for name, t in times.items()}


def sise_seconds(explainers: dict[str, onnx_sise.Explainer], photo: Path, target: int, rounds: int
                 ) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in explainers}
    for _ in range(rounds):
        for name, explainer in explainers.items():
            start = time.perf_counter()
            explainer.explain(photo, target, "sise")
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def masked_batch(explainer: onnx_sise.Explainer, photo: Path, size: int) -> np.ndarray:
    return np.concatenate(calibration_batches(explainer, [photo], masks_per_photo=size, seed=1))


def variants(model: Path, calibration: list[np.ndarray], float_layers: list[int], folder: Path, threads: int
             ) -> dict[str, onnx_sise.Explainer]:
    out = {"fp32": onnx_sise.Explainer(model, threads=threads)}
    for n in float_layers:
        path = write_scoring_variant(model, folder / f"int8_f{n}.onnx", "int8", calibration, float_layers=n)
        out[f"int8, {n} float convs"] = onnx_sise.Explainer(model, threads=threads, scoring_model=path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="explainable Lite0 (*.sise.onnx, real weights)")
    parser.add_argument("--folder", type=Path, default=None, help="photo set folder (photo_set.py)")
    parser.add_argument("--calibrate", type=Path, nargs="+", required=True, help="calibration photos, not in the set")
    parser.add_argument("--float-layers", default="0,12", help="comma-separated float_layers of the variants")
    parser.add_argument("--photos", type=int, default=34, help="first N photos of the set (0: speed only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    parser.add_argument("--resnet50", action="store_true", help="also the speed on a random-weight ResNet-50")
    args = parser.parse_args(argv)
    float_layers = [int(x) for x in args.float_layers.split(",")]
    print(machine(), flush=True)
    photos = photo_set(args.folder)[:args.photos]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = onnx_sise.Explainer(args.model, threads=args.threads)
        explainers = variants(args.model, calibration_batches(fp32, args.calibrate), float_layers, Path(tmp),
                              args.threads)
        worst: dict[str, list[float]] = {name: [] for name in explainers if name != "fp32"}
        for photo in photos:
            reference = four_maps(explainers["fp32"], photo.path, photo.target)
            line = []
            for name in worst:
                got = four_maps(explainers[name], photo.path, photo.target)
                rs = [pearson(reference[k], got[k]) for k in MAPS]
                worst[name].append(min(rs))
                line.append(f"{name}: " + " ".join(f"{r:.3f}" for r in rs))
            print(photo.path.name, " | ".join(line), flush=True)
        timed = args.calibrate[0]  # --photos 0: speed only
        batch = masked_batch(fp32, timed, fp32.batch_size)
        speed = passes_per_second(explainers, batch, args.rounds)
        seconds = sise_seconds(explainers, timed, None, max(1, args.rounds // 2))
        resnet = {}
        if args.resnet50:
            path = Path(tmp) / "resnet50.sise.onnx"
            export_zoo("resnet50", str(path))
            plain = onnx_sise.Explainer(path, threads=args.threads)
            big = variants(path, calibration_batches(plain, args.calibrate[:2]), float_layers, Path(tmp), args.threads)
            resnet = passes_per_second(big, masked_batch(plain, timed, plain.batch_size), args.rounds)
    rows = ["| scoring graph | worst r | median r | photos under 0.95 | passes/s | x fp32 | SISE s | ResNet-50 passes/s "
            "| x fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for name in explainers:
        rs = worst.get(name)
        quality = (f"{min(rs):.3f} | {statistics.median(rs):.3f} | {sum(r < 0.95 for r in rs)}/{len(rs)}"
                   if rs else ("1 | 1 | 0" if name == "fp32" else "- | - | -"))
        big = (f"{resnet[name]:.1f} | {resnet[name] / resnet['fp32']:.2f}" if resnet else "- | -")
        rows.append(f"| {name} | {quality} | {speed[name]:.1f} | {speed[name] / speed['fp32']:.2f} "
                    f"| {seconds[name]:.2f} | {big} |")
    table = "\n".join(rows)
    print(table)
    command = "python benchmarks/bench_int8.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\n{machine()}, {args.threads} threads. "
                     "r: the lowest of the four map correlations with float32 (SISE and Ada-SISE, hard and "
                     "soft fusion gate) per photo; worst and median over the photos.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
