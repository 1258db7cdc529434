"""Ours against the peers, side by side in one run: the same EfficientNet-Lite0, the same
preprocessed tensors, the same thread count, the contenders taking turns photo by photo.

    python benchmarks/bench_peers.py [--model lite0.sise.onnx] [--photos 5] [--rounds 3]
                                     [--threads 2] [--rows gradcam,onepass,score-cam,rise,sise]
                                     [--rise-5000] [--no-write]

The peers are what users pick instead: pytorch-grad-cam 1.5.7 (Grad-CAM, Score-CAM),
Captum 0.9 (LayerGradCam), OpenVINO XAI 1.1 (ReciproCAM, RISE, AISE), installed with
--no-deps (Makefile `bench-peers`), torch kept at the CPU build. Each peer runs on the
model as it takes it: pytorch-grad-cam and Captum on the eager torch network (hooked at
exactly our tap, tests/peers/lite0.py), OpenVINO XAI on the scoring graph of the same ONNX
in OpenVINO, in its default precision (bf16 where the CPU has it) and in f32. Ours runs
on every backend this Explainer offers; a row compares our fastest with the fastest
peer. The time is what a user waits for a map from a preprocessed tensor: a peer's own
upsampling included, ours at the model's input size.

Prints the machine, its CPU flags, the threads and each backend, and appends the table
and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/peers: the peers' view of Lite0

from bench_preparation import machine  # noqa: E402
from photo_set import photo_set  # noqa: E402
from quality import model_or_export  # noqa: E402

from onnx_sise import Explainer  # noqa: E402
from onnx_sise.errors import SiseError  # noqa: E402

# Our backends, as Explainer options; those this installation refuses are left out of the run.
BACKENDS = {
    "onnxruntime": {},
    "openvino f32": {"provider": "openvino", "precision": "f32"},
    "openvino bf16": {"provider": "openvino", "precision": "bf16"},
}
ROWS = ("gradcam", "onepass", "score-cam", "rise", "sise")


@dataclass
class Contender:
    """One way to make a map for (tensor, target), and its measured seconds."""

    name: str
    ours: bool
    run: Callable[[np.ndarray, int], object]
    seconds: list[float] = field(default_factory=list)

    def timed(self, x: np.ndarray, target: int) -> None:
        started = time.perf_counter()
        self.run(x, target)
        self.seconds.append(time.perf_counter() - started)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def our_explainers(model: Path, threads: int) -> dict[str, Explainer]:
    explainers = {}
    for name, options in BACKENDS.items():
        try:
            explainers[name] = Explainer(model, threads=threads, batch_size=64, **options)
        except (SiseError, TypeError) as error:
            print(f"  backend {name}: not here ({str(error).splitlines()[0][:120]})")
    return explainers


def ours(explainers: dict[str, Explainer], method: str, **options: object) -> list[Contender]:
    return [Contender(f"ours {method}, {name}", True,
                      lambda x, t, e=e: e.explain(x, target=t, method=method, **options))
            for name, e in explainers.items()]


class Peers:
    """The peers' code, loaded once: the tapped eager Lite0 and the OpenVINO scoring graph."""

    def __init__(self, model: Path, threads: int, folder: Path) -> None:
        import openvino
        import torch
        from peers import peer
        from peers.lite0 import deepest_tap_layer, plain_scoring_graph, tapped

        from onnx_sise_export import build_zoo_model

        torch.set_num_threads(threads)
        eager, _ = build_zoo_model("efficientnet-lite0")
        eager.eval()
        for p in eager.parameters():
            p.requires_grad_(False)
        self.torch = torch
        self.eager, self.tap = tapped(eager, "_avg_pooling")
        self.grad_cam = peer("pytorch_grad_cam")
        self.captum = peer("captum.attr")
        peer("openvino_xai")
        self.core = openvino.Core()
        self.ov_model = self.core.read_model(str(plain_scoring_graph(model, folder / "lite0.onnx")))
        self.layer = deepest_tap_layer(self.ov_model, model)
        self.threads = threads

    def compiled(self, graph: object, precision: str | None) -> object:
        config = {"INFERENCE_NUM_THREADS": str(self.threads)}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        return self.core.compile_model(graph, "CPU", config)

    def tensor(self, x: np.ndarray) -> object:
        return self.torch.from_numpy(x[None]).requires_grad_(True)

    def grad_cam_class(self, name: str) -> Contender:
        cam = getattr(self.grad_cam, name)(model=self.eager, target_layers=[self.tap])
        target_of = self.grad_cam.utils.model_targets.ClassifierOutputTarget
        return Contender(f"pytorch-grad-cam {name}", False,
                         lambda x, t: cam(self.tensor(x), targets=[target_of(t)])[0])

    def captum_gradcam(self) -> Contender:
        layer = self.captum.LayerGradCam(self.eager, self.tap)
        upsample = self.captum.LayerAttribution.interpolate

        def run(x: np.ndarray, t: int) -> object:
            return upsample(layer.attribute(self.tensor(x), target=t), x.shape[1:], "bilinear")
        return Contender("Captum LayerGradCam", False, run)

    def reciprocam(self, precision: str | None) -> Contender:
        from openvino_xai.methods.white_box.recipro_cam import ReciproCAM

        recipro = ReciproCAM(self.ov_model, target_layer=self.layer, prepare_model=False)
        recipro._model_compiled = self.compiled(recipro.prepare_model(load_model=False), precision)
        return Contender(f"OpenVINO XAI ReciproCAM, {precision or 'default'}", False,
                         lambda x, t: recipro.generate_saliency_map(x[None])[0, t])

    def rise(self, precision: str | None, masks: int, cells: int) -> Contender:
        from openvino_xai.methods.black_box.rise import RISE

        rise = RISE(self.ov_model, postprocess_fn=lambda outputs: outputs["batch_scores"], prepare_model=False)
        rise._model_compiled = self.compiled(self.ov_model, precision)
        return Contender(f"OpenVINO XAI RISE {masks}, {precision or 'default'}", False,
                         lambda x, t: rise.generate_saliency_map(x[None], target_indices=[t], num_masks=masks,
                                                                 num_cells=cells))

    def aise(self, precision: str | None) -> Contender:
        from openvino_xai.methods.black_box.aise.classification import AISEClassification

        aise = AISEClassification(self.ov_model, postprocess_fn=lambda outputs: outputs["batch_scores"],
                                  prepare_model=False)
        aise._model_compiled = self.compiled(self.ov_model, precision)
        return Contender(f"OpenVINO XAI AISE, {precision or 'default'}", False,
                         lambda x, t: aise.generate_saliency_map(x[None], target_indices=[t]))


def contenders(row: str, explainers: dict[str, Explainer], peers: Peers, rise_masks: int) -> list[Contender]:
    if row == "gradcam":
        return [*ours(explainers, "gradcam"), peers.grad_cam_class("GradCAM"), peers.captum_gradcam()]
    if row == "onepass":
        return [*ours(explainers, "reciprocam"), *ours(explainers, "gradcam"), peers.reciprocam(None),
                peers.reciprocam("f32")]
    if row == "score-cam":
        return [*ours(explainers, "score-cam"), peers.grad_cam_class("ScoreCAM")]
    if row == "rise":
        return [*ours(explainers, "rise", rise_masks=rise_masks), peers.rise(None, rise_masks, 7),
                peers.rise("f32", rise_masks, 7)]
    if row == "sise":
        return [*ours(explainers, "sise"), *ours(explainers, "ada-sise"), peers.aise(None), peers.aise("f32")]
    raise ValueError(row)


def measure(contenders_: list[Contender], photos: list[tuple[np.ndarray, int]], rounds: int) -> None:
    """Every contender once to warm up, then `rounds` turns per photo, each taking its turn."""
    x, target = photos[0]
    for c in contenders_:
        c.run(x, target)
    for x, target in photos:
        for _ in range(rounds):
            for c in contenders_:
                c.timed(x, target)


def row_table(title: str, measured: list[Contender]) -> list[str]:
    best_ours = min((c for c in measured if c.ours), key=lambda c: c.median)
    best_peer = min((c for c in measured if not c.ours), key=lambda c: c.median)
    lines = [f"| {title} | {c.name} | {c.median:.3f} | {best_peer.median / c.median:.2f}x |"
             for c in sorted(measured, key=lambda c: (not c.ours, c.median))]
    verdict = "ours" if best_ours.median <= best_peer.median else "the peer"
    lines.append(f"| {title} | **fastest: {verdict}** ({best_ours.name} vs {best_peer.name}) | | "
                 f"**{best_peer.median / best_ours.median:.2f}x** |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--photos", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="timed turns per photo and contender")
    parser.add_argument("--slow-photos", type=int, default=1, help="photos for pytorch-grad-cam's Score-CAM "
                        "(40 s a map here) and RISE 5000 (default: 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--rise-5000", action="store_true", help="also RISE with 5000 masks, OpenVINO XAI's default")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache (default: photo_set's)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    rows = args.rows.split(",")
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}: choose from {', '.join(ROWS)}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = model_or_export(args.model, folder)
        explainers = our_explainers(model, args.threads)
        first = next(iter(explainers.values()))
        photos = [(first.preprocess(p.path)[0], p.target) for p in photo_set(args.folder)[:args.photos]]
        peers = Peers(model, args.threads, folder)
        print(f"machine: {machine()}; {args.threads} threads each; ours: {', '.join(explainers)}; "
              f"{len(photos)} photos x {args.rounds} rounds", flush=True)
        lines = []
        plan = [(row, 2000) for row in rows] + ([("rise", 5000)] if args.rise_5000 else [])
        for row, masks in plan:
            measured = contenders(row, explainers, peers, masks)
            slow = row == "score-cam" or masks == 5000
            measure(measured, photos[:args.slow_photos] if slow else photos, 1 if slow else args.rounds)
            title = f"RISE {masks}" if row == "rise" else row
            lines += row_table(title, measured)
            print("\n".join(lines[-len(measured) - 1:]), flush=True)

    head = ["| row | contender | median s | fastest peer / this |", "|---|---|---|---|"]
    command = "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:])
    text = (f"\n## {datetime.date.today()}: `{command}`\n\n{machine()}; {args.threads} threads each; "
            f"onnxruntime CPU provider and OpenVINO CPU plugin; {len(photos)} photos of benchmarks/photo_set.py x "
            f"{args.rounds} turns (Score-CAM and RISE 5000: {args.slow_photos} photo x 1), medians.\n\n"
            + "\n".join(head + lines) + "\n")
    print(text)
    if not args.no_write:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write(text)


if __name__ == "__main__":
    main()
