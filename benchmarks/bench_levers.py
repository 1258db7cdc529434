"""CPU levers of the explain path, each measured against its alternative in the same run
(settings interleaved, medians), on one model.

    python benchmarks/bench_levers.py [--model efficientnet-lite0] [--repeats 3]

Levers: mask preparation overlapped with inference (prefetch on/off), IO binding on the
CPU, the batch size, fp16 and int8 variants of the masked-pass graph (time, and Pearson r
of their maps with float32 on five real photos), onnxruntime threads, graph optimisation
level and memory arena (bare forward passes at batch 32), a padded last chunk, packing
the tails of several blocks (or images) into full batches, constant and duplicate masks
skipped, and accumulating at feature-map resolution (docs/design.md section 6: time and error
against the direct form). Appends a table to benchmarks/RESULTS.md.
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
from onnx_sise import kernels
from onnx_sise.methods.sise.masks import distinct_maps
from onnx_sise.methods.sise.method import average_gradients, select_positive
from onnx_sise_export import calibration_batches, export_zoo, write_scoring_variant

HERE = Path(__file__).resolve().parent
DATA = Path(skimage.__file__).parent / "data"
PHOTO = DATA / "coffee.png"
CALIBRATION_PHOTOS = ("camera.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_right.png")
FIDELITY_PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")


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


def calibration(explainer: onnx_sise.Explainer) -> list[np.ndarray]:
    """Photos other than the fidelity ones, times coarse random masks (int8 ranges)."""
    return calibration_batches(explainer, [DATA / name for name in CALIBRATION_PHOTOS])


def mask_counts(explainer: onnx_sise.Explainer) -> tuple[int, int, int]:
    """SISE's selected maps on PHOTO, how many are constant (no mask), and how many give
    the same mask as another selected map (scored once: distinct_maps)."""
    x, _ = explainer.preprocess(PHOTO)
    target = int(np.argmax(explainer.model.scores(x)))
    onehot = np.zeros(explainer.info.num_classes, np.float32)
    onehot[target] = 1.0
    selected = constant = duplicate = 0
    for block in explainer.model.block_features(x, onehot, np.zeros_like(onehot)):
        chosen = select_positive(average_gradients(block.gradients))
        representatives, group = distinct_maps(block.activations, chosen)
        selected += chosen.size
        constant += int((group < 0).sum())
        duplicate += int((group >= 0).sum() - representatives.size)
    return selected, constant, duplicate


def feature_resolution_accumulation(explainer: onnx_sise.Explainer, repeats: int) -> tuple[float, float, float]:
    """sum_k w_k m_k / sum(m_k) over the deepest block's masks: direct (upsampled masks)
    against accumulated at feature-map resolution and upsampled once, using that
    upsampling is linear and keeps constants (min, max and sum taken from the upsampled
    masks, which the masked batch needs anyway). Returns (direct s, feature s, max rel error)."""
    x, _ = explainer.preprocess(PHOTO)
    onehot = np.zeros(explainer.info.num_classes, np.float32)
    onehot[int(np.argmax(explainer.model.scores(x)))] = 1.0
    maps = explainer.model.block_features(x, onehot, np.zeros_like(onehot))[-1].activations
    flat = maps.reshape(maps.shape[0], -1)
    maps = np.ascontiguousarray(maps[flat.max(axis=1) > flat.min(axis=1)][:256])
    weights = np.random.default_rng(0).uniform(size=maps.shape[0]).astype(np.float32)
    height, width = x.shape[1:]
    masks = kernels.upsample_bilinear(maps, height, width)
    lo, hi = masks.min(axis=(1, 2)), masks.max(axis=(1, 2))
    sums = ((masks - lo[:, None, None]) / (hi - lo)[:, None, None]).sum(axis=(1, 2), dtype=np.float64)

    def direct() -> np.ndarray:
        unit = masks.copy()
        kernels.minmax_normalize(unit)
        acc = np.zeros((height, width))
        kernels.accumulate_contributions(unit, weights, acc)
        return acc

    def at_feature_resolution() -> np.ndarray:
        scale = (weights / sums / (hi - lo)).astype(np.float64)
        small = np.tensordot(scale, maps.astype(np.float64), axes=1)
        offset = float((scale * lo).sum())
        return kernels.upsample_bilinear(small[None].astype(np.float32), height, width)[0].astype(np.float64) - offset

    times = interleaved({"direct": direct, "feature": at_feature_resolution}, repeats)
    reference, fast = direct(), at_feature_resolution()
    return times["direct"], times["feature"], float(np.abs(fast - reference).max() / np.abs(reference).max())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


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
        explainers["IO binding on the CPU"] = onnx_sise.Explainer(path, io_binding=True)
        explainers.update({f"batch {b}": onnx_sise.Explainer(path, batch_size=b) for b in (16, 64)})
        fp32 = explainers["prefetch on"]
        batches = calibration(fp32)
        for precision in ("fp16", "int8"):
            variant = write_scoring_variant(path, Path(tmp) / f"model.{precision}.onnx", precision, batches)
            explainers[f"{precision} masked passes"] = onnx_sise.Explainer(path, scoring_model=variant)
        for e in explainers.values():
            e.explain(PHOTO)
        medians = interleaved({k: (lambda e=e: e.explain(PHOTO)) for k, e in explainers.items()}, args.repeats)
        rows += [(f"SISE explanation, {k}", f"{v:.2f} s") for k, v in medians.items()]
        for precision in ("fp16", "int8"):
            r = [pearson(fp32.explain(DATA / p).saliency, explainers[f"{precision} masked passes"].explain(DATA / p).saliency)
                 for p in FIDELITY_PHOTOS]
            rows.append((f"{precision} fidelity: Pearson r of the map with float32, {len(r)} photos",
                         " / ".join(f"{v:.3f}" for v in r)))
        used = list(fp32.explain(PHOTO).masks_used.values())
        passes = sum(used)
        per_block = [min(32, u - start) for u in used for start in range(0, u, 32)]
        full = np.random.default_rng(0).normal(size=(32, *fp32.preprocess(PHOTO)[0].shape)).astype(np.float32)
        medians = interleaved({
            "per block (tails partial)": lambda: [fp32.model.batch_scores(full[:n], [0]) for n in per_block],
            "packed across blocks": lambda: [fp32.model.batch_scores(full[:min(32, passes - s)], [0])
                                             for s in range(0, passes, 32)],
            "packed, last chunk padded": lambda: [fp32.model.batch_scores(full, [0]) for _ in range(0, passes, 32)],
        }, args.repeats)
        rows += [(f"{passes} bare passes at batch 32 ({len(per_block)} calls per block), {k}", f"{v:.2f} s")
                 for k, v in medians.items()]
        selected, constant, duplicate = mask_counts(fp32)
        rows.append(("SISE masks on coffee.png: selected / constant (skipped) / duplicates after normalisation",
                     f"{selected} / {constant} / {duplicate}"))
        direct_s, feature_s, error = feature_resolution_accumulation(fp32, args.repeats)
        rows.append(("eq. 10-11 over 256 deepest-block masks: direct / at feature resolution, max rel error",
                     f"{direct_s * 1000:.1f} ms / {feature_s * 1000:.1f} ms, {error:.1e}"))
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
        rows += [(f"128 bare passes (4 x 32), {k}", f"{v:.2f} s") for k, v in medians.items()]
    for name, value in rows:
        print(f"{name}: {value}")
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/bench_levers.py --model {args.model} "
                     f"--repeats {args.repeats}`\n\n{args.model}, coffee.png, CPUExecutionProvider "
                     f"(onnxruntime {ort.__version__}), {cores} cores; settings interleaved, medians.\n\n"
                     "| setting | measured |\n|---|---|\n" + "\n".join(f"| {n} | {v} |" for n, v in rows) + "\n")


if __name__ == "__main__":
    main()
