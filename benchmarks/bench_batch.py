"""`batch` on Ray against a plain sequential loop, Ray's overhead as a ratio, throughput
against workers on a simulated multi-node cluster, and, on paper, 50,000 SISE
explanations on N CPU nodes and N T4 GPUs.

    python benchmarks/bench_batch.py [--model M] [--images 16] [--methods gradcam,rise]
                                     [--rise-masks 128] [--nodes 1,2,3]

- sequential: one process, one Explainer of all the machine's threads, the same work per
  image as an actor (read, decode, explain, write the map, overlay and row);
- batch: explain_dataset on a local Ray (its default plan: actors x threads from the CPUs),
  timed with Ray's start (a cold run) and once Ray runs (actors started by the run, counted);
- nodes: ray.cluster_utils.Cluster with K nodes of 1 CPU each (all on this machine: past
  its cores the figure says how Ray shares them, not how a real cluster scales);
- on paper: images x per-image SISE seconds (benchmarks/RESULTS.md, 2 threads of this
  machine; the SISE paper's 9.21 s for ResNet-50 on a T4) / N, divided by the measured
  batch efficiency.
Prints markdown for RESULTS.md. Uses the public API only.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import onnxruntime as ort
import skimage

from onnx_sise import Explainer
from onnx_sise.batch import explain_dataset
from onnx_sise.batch.inputs import list_inputs
from onnx_sise.batch.outputs import Outputs
from onnx_sise.batch.worker import explain_item

PHOTOS = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png", "horse.png",
          "hubble_deep_field.jpg", "retina.jpg")
# Per-image SISE seconds, 2 threads of this machine, float32 (RESULTS.md, 2026-11-26 bench_explain.py).
CPU_SECONDS = {"efficientnet-lite0": 2.14, "resnet50": 54.28}
T4_RESNET50_SECONDS = 9.21  # the SISE paper (Sattarzadeh et al., AAAI 2021), ResNet-50 SISE on a Tesla T4
# Lite0 on a T4 is not measured: scaled from ResNet-50 by masked passes x GFLOP (412 x 0.39 against 2000 x
# 4.1), an optimistic bound (a small model keeps a GPU less busy).
T4_SECONDS = {"resnet50": T4_RESNET50_SECONDS, "efficientnet-lite0": T4_RESNET50_SECONDS * 412 * 0.39 / (2000 * 4.1)}


def image_folder(folder: Path, count: int) -> Path:
    """`count` images: the photos, then half-size copies of them, and so on."""
    data = Path(skimage.__file__).parent / "data"
    made, scale = 0, 1.0
    while made < count:
        for name in PHOTOS:
            if made == count:
                break
            image = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
            if scale != 1.0:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"{Path(name).stem}_{made}.png"), image)
            made += 1
        scale /= 2
    return folder


def sequential(model: Path, folder: Path, out: Path, method: str, options: dict) -> float:
    """Seconds of a plain loop over the images with one Explainer of all threads."""
    started = time.perf_counter()
    explainer = Explainer(model, threads=os.cpu_count())
    outputs = Outputs(out, method)
    for item in list_inputs(folder):
        explain_item(explainer, outputs, item.key, item.source, None, None, options)
    return time.perf_counter() - started


def batch(model: Path, folder: Path, out: Path, method: str, options: dict, **kwargs: object) -> tuple[float, str]:
    summary = explain_dataset(model, folder, out, method, **kwargs, **options)
    assert summary.errors == 0 and summary.skipped == 0, summary
    plan = summary.plan
    return summary.seconds, f"{plan.actors} x {plan.threads}" if plan else "-"


def nodes_run(model: Path, folder: Path, work: Path, method: str, options: dict, nodes: int) -> tuple[float, str]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        cluster.wait_for_nodes()
        return batch(model, folder, work / f"nodes{nodes}", method, options, threads=1)
    finally:
        ray.shutdown()
        cluster.shutdown()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--methods", default="gradcam,rise")
    parser.add_argument("--rise-masks", type=int, default=128)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--paper-nodes", default="1,4,16,64")
    parser.add_argument("--node-cores", type=int, default=16, help="cores of a paper CPU node (default: 16)")
    parser.add_argument("--parts", default="compare,nodes,paper", help="which parts to run (default: all)")
    parser.add_argument("--efficiency", type=float, default=None,
                        help="sequential / batch time for the paper part when compare is not run (default: 1)")
    args = parser.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="bench_batch-"))
    try:
        if args.model is None:
            from onnx_sise_export import export_zoo

            args.model = work / "lite0.sise.onnx"
            export_zoo("efficientnet-lite0", str(args.model))
        (work / "images").mkdir()
        folder = image_folder(work / "images", args.images)
        cores = os.cpu_count()
        print(f"machine: {platform.machine()} {cores} cores (shared with other jobs), {platform.platform()}; "
              f"onnxruntime {ort.__version__}, ray {ray.__version__}; CPUExecutionProvider; model {args.model.name}; "
              f"{args.images} images of {', '.join(PHOTOS)} and smaller copies\n")
        parts = set(args.parts.split(","))
        efficiency = {}
        slow = args.methods.split(",")[-1]
        if "compare" in parts:
            efficiency = compare(args, folder, work, cores)
        if "nodes" in parts:
            nodes_table(args, folder, work, slow, cores)
        if "paper" in parts:
            paper(args, efficiency.get(slow, args.efficiency or 1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(args: argparse.Namespace, folder: Path, work: Path, cores: int) -> dict[str, float]:
    """The sequential loop against batch, cold and with Ray running; sequential / batch time per method."""
    import ray

    print("| method | sequential images/s (1 process, " f"{cores} threads) | batch images/s, cold (Ray started) "
          "| batch images/s, Ray running | actors x threads | Ray overhead ratio (batch time / sequential time, "
          "Ray running) |")
    print("|---|---|---|---|---|---|")
    efficiency = {}
    for method in args.methods.split(","):
        options = {"rise_masks": args.rise_masks} if method == "rise" else {}
        seq = sequential(args.model, folder, work / f"seq-{method}", method, options)
        cold, plan = batch(args.model, folder, work / f"cold-{method}", method, options)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            warm, _ = batch(args.model, folder, work / f"warm-{method}", method, options)
        finally:
            ray.shutdown()
        n = args.images
        efficiency[method] = seq / warm
        label = f"{method} ({args.rise_masks} masks)" if method == "rise" else method
        print(f"| {label} | {n / seq:.2f} | {n / cold:.2f} | {n / warm:.2f} | {plan} | {warm / seq:.2f} |")
    return efficiency


def nodes_table(args: argparse.Namespace, folder: Path, work: Path, slow: str, cores: int) -> None:
    print("\nSimulated cluster (ray.cluster_utils.Cluster, nodes of 1 CPU each, one actor of 1 thread per node, "
          f"all on this {cores}-core machine):\n")
    options = {"rise_masks": args.rise_masks} if slow == "rise" else {}
    print(f"| nodes (workers) | {slow} images/s | speedup against 1 node |")
    print("|---|---|---|")
    first = None
    for nodes in (int(k) for k in args.nodes.split(",")):
        seconds, _ = nodes_run(args.model, folder, work, slow, options, nodes)
        rate = args.images / seconds
        first = first or rate
        print(f"| {nodes} | {rate:.2f} | {rate / first:.2f}x |")


def paper(args: argparse.Namespace, efficiency: float) -> None:
    """50,000 SISE explanations on N nodes, from per-image figures; CPU nodes of
    `node_cores` cores run cores/2 actors of 2 threads, each at the measured 2-thread speed,
    and lose the measured batch efficiency (sequential / batch time)."""
    keep = min(1.0, efficiency)
    print(f"\nOn paper: 50,000 SISE explanations (hours). CPU node = {args.node_cores} cores running "
          f"{args.node_cores // 2} actors of 2 threads at the per-image seconds of RESULTS.md (2 threads of this "
          f"machine: Lite0 {CPU_SECONDS['efficientnet-lite0']} s, ResNet-50 {CPU_SECONDS['resnet50']} s), times "
          f"the measured efficiency {keep:.2f}; T4: ResNet-50 {T4_RESNET50_SECONDS} s per image (the SISE paper), "
          f"Lite0 {T4_SECONDS['efficientnet-lite0']:.2f} s scaled by passes x GFLOP (not measured: optimistic), "
          "one actor per GPU.\n")
    counts = [int(n) for n in args.paper_nodes.split(",")]
    print("| model | hardware | " + " | ".join(f"N = {n}" for n in counts) + " |")
    print("|---|---|" + "---|" * len(counts))
    for model in ("efficientnet-lite0", "resnet50"):
        cpu = [50_000 * CPU_SECONDS[model] / (n * (args.node_cores // 2) * keep) / 3600 for n in counts]
        gpu = [50_000 * T4_SECONDS[model] / (n * keep) / 3600 for n in counts]
        print(f"| {model} | {args.node_cores}-core CPU nodes | " + " | ".join(f"{h:.2f}" for h in cpu) + " |")
        print(f"| {model} | T4 GPUs | " + " | ".join(f"{h:.2f}" for h in gpu) + " |")


if __name__ == "__main__":
    sys.exit(run())
