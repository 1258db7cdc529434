"""provider="openvino" against onnxruntime: the masked passes' speed and the maps' fidelity.

    python benchmarks/bench_openvino.py --model lite0.sise.onnx [--folder PHOTOS] [--threads 2]
        [--methods gradcam,sise,ada-sise,score-cam,rise] [--rise-masks 2000] [--long-photos 6]

Two parts, each through the public API (the pass part through openvino itself, to
compare the settings model/openvino.py chose among):
1. one masked pass (batch 32, Lite0's scoring graph) in onnxruntime's CPU provider and in
   OpenVINO f32 / bf16 with the LATENCY or THROUGHPUT hint and a dynamic or static batch:
   ms per pass, medians of interleaved runs;
2. per method on the photo set (benchmarks/photo_set.py; RISE and Score-CAM, the long
   ones, on the first --long-photos only), the photo's target class explained by onnxruntime f32,
   OpenVINO f32 and OpenVINO bf16 in turn: median seconds per photo and the Pearson r of
   each OpenVINO map with onnxruntime's (worst and median over the photos).
ResNet-50's SISE and Ada-SISE on each backend against the paper's T4 times:
benchmarks/resnet50_vs_paper.py.
The machine may be shared: compare the backends within one run (they take turns), not
across runs. Prints the machine, CPU flags, providers and threads; appends the tables
and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino
from bench_preparation import machine
from photo_set import photo_set

from onnx_sise import Explainer
from onnx_sise.model.info import METADATA_KEY, ModelInfo
from onnx_sise.model.scoring import scoring_graph

HERE = Path(__file__).resolve().parent
LONG = ("rise", "score-cam")  # hundreds to thousands of passes a photo


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def pass_table(model: Path, threads: int, batch: int = 32, repeats: int = 5) -> list[str]:
    """ms per masked pass of the scoring graph: onnxruntime and OpenVINO's settings."""
    proto = onnx.load(str(model))
    info = ModelInfo.from_json({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    data = scoring_graph(proto, info, str(model)).SerializeToString()
    x = np.random.default_rng(0).uniform(size=(batch, 3, info.input.height, info.input.width)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    runs = {"onnxruntime CPU f32": lambda: session.run(None, {info.graph.masked_batch: x})}
    core = openvino.Core()
    precisions = ["f32"] + (["bf16"] if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])
    for precision in precisions:
        for hint in ("LATENCY", "THROUGHPUT"):
            for static in (False, True):
                graph = core.read_model(data, b"")
                if static:
                    graph.reshape([batch, 3, info.input.height, info.input.width])
                compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                             "PERFORMANCE_HINT": hint,
                                                             "INFERENCE_NUM_THREADS": threads})
                request = compiled.create_infer_request()
                runs[f"OpenVINO {precision} {hint} {'static' if static else 'dynamic'} batch"] = (
                    lambda r=request: r.infer({0: x}))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["onnxruntime CPU f32"])
    rows = [f"| scoring pass, batch {batch} | ms per pass | time / onnxruntime |", "|---|---|---|"]
    for name, seconds in times.items():
        rows.append(f"| {name} | {statistics.median(seconds) * 1000 / batch:.2f} | "
                    f"{statistics.median(seconds) / base:.2f} |")
        print(rows[-1], flush=True)
    return rows


def backends(model: Path, threads: int, precisions: list[str]) -> dict[str, Explainer]:
    """onnxruntime f32, then OpenVINO in each of `precisions` this CPU has."""
    found = {"onnxruntime f32": Explainer(model, threads=threads)}
    for precision in precisions:
        explainer = Explainer(model, provider="openvino", precision="auto" if precision == "bf16" else precision,
                              threads=threads)
        if explainer.model.scoring_precision == precision:
            found[f"OpenVINO {precision}"] = explainer
    return found


def fidelity_table(model: Path, folder: Path | None, methods: list[str], threads: int, rise_masks: int,
                   long_photos: int, photos: slice, precisions: list[str]) -> list[str]:
    explainers = backends(model, threads, precisions)
    names = list(explainers)
    chosen = photo_set(folder)[photos]
    seconds: dict[tuple[str, str], list[float]] = {(m, b): [] for m in methods for b in names}
    r: dict[tuple[str, str], list[float]] = {(m, b): [] for m in methods for b in names[1:]}
    for turn, photo in enumerate(chosen):
        for method in methods:
            if method in LONG and turn >= long_photos:
                continue
            options = {"rise_masks": rise_masks} if method == "rise" else {}
            order = names[turn % len(names):] + names[:turn % len(names)]  # who goes first takes turns
            maps = {}
            for name in order:
                start = time.perf_counter()
                maps[name] = explainers[name].explain(photo.path, target=photo.target, method=method,
                                                      **options).saliency
                seconds[(method, name)].append(time.perf_counter() - start)
            for name in names[1:]:
                r[(method, name)].append(pearson(maps[name], maps[names[0]]))
            print(photo.name, method, " ".join(f"{n} {seconds[(method, n)][-1]:.2f}s" for n in names),
                  " ".join(f"r {r[(method, n)][-1]:.4f}" for n in names[1:]), flush=True)
    header = ["method", "photos", *(f"{n} s" for n in names), *(f"{n} speed-up" for n in names[1:]),
              *(f"{n} r worst / median" for n in names[1:])]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        medians = {n: statistics.median(seconds[(method, n)]) for n in names}
        label = f"{method} ({rise_masks} masks)" if method == "rise" else method
        rows.append(f"| {label} | {len(seconds[(method, names[0])])} | "
                    + " | ".join(f"{medians[n]:.2f}" for n in names) + " | "
                    + " | ".join(f"{medians[names[0]] / medians[n]:.2f}x" for n in names[1:]) + " | "
                    + " | ".join(f"{min(r[(method, n)]):.4f} / {statistics.median(r[(method, n)]):.4f}"
                                 for n in names[1:]) + " |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="explainable EfficientNet-Lite0")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache folder (default: photo_set's)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default: 2)")
    parser.add_argument("--methods", default="gradcam,sise,ada-sise,score-cam,rise", help="(default: %(default)s)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="(default: %(default)s)")
    parser.add_argument("--long-photos", type=int, default=6,
                        help="photos RISE and Score-CAM run on (default: %(default)s)")
    parser.add_argument("--precisions", default="f32,bf16",
                        help="OpenVINO precisions beside onnxruntime in the maps part (default: %(default)s)")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N photos (default: none)")
    parser.add_argument("--limit", type=int, default=None, help="the first N photos only (default: all)")
    parser.add_argument("--parts", default="passes,maps", help="(default: %(default)s)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    precisions = [p for p in args.precisions.split(",") if p]
    started = time.perf_counter()
    head = (f"{machine()}; onnxruntime {ort.__version__} CPUExecutionProvider, OpenVINO {openvino.__version__} "
            f"CPU plugin, {args.threads} threads each; OpenVINO CPU capabilities "
            f"{' '.join(openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}")
    print(head, flush=True)
    sections = []
    if "passes" in parts:
        sections.append("### One masked pass\n\n" + "\n".join(pass_table(args.model, args.threads)))
    if "maps" in parts:
        methods = [m for m in args.methods.split(",") if m]
        rows = fidelity_table(args.model, args.folder, methods, args.threads, args.rise_masks,
                              args.long_photos, slice(args.skip, args.limit), precisions)
        sections.append("### Maps on the photo set: median seconds per photo, Pearson r with onnxruntime's map\n\n"
                        + "\n".join(rows))
    command = "python benchmarks/bench_openvino.py " + " ".join(sys.argv[1:])
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\n{head}; the machine is shared with other "
                     f"workers, so compare within this run; total {time.perf_counter() - started:.0f} s.\n\n"
                     + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
