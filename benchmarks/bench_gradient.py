"""The gradient call and Grad-CAM end to end, against the bare forward pass, the backward
to Grad-CAM's tap, and Captum's LayerGradCam on the same tensor.

    python benchmarks/bench_gradient.py [--zoo efficientnet-lite0,resnet50] [--repeats 15]
                                        [--threads 2] [--work DIR]

Per zoo model (exported in this run, or read from --work where exported before;
ResNet-50 has seeded random weights, fine for timing), on one real photo preprocessed
once, every figure the median of runs taking turns (so a load that comes and goes on a
shared machine falls on all of them alike):

1. F: the bare forward pass (the scoring graph, batch 1); G_none, G_deep, G_all: the
   gradient call that stops before any tap, at the deepest tap, at the shallowest
   (every tap, what every call did before the levels); B = G_deep - G_none, the backward
   from the logit to the deepest tap; E: Grad-CAM end to end (`Explainer.explain` on the
   preprocessed tensor: the gradient call, the map, its normalisation and resize).
   E / (F + B) is the brief's ratio (issue 16 item 2: at most 1.5).
2. The rest of E, one part at a time: the map from the features, and `to_photo` right
   after an onnxruntime run and on its own.
3. Several targets: Grad-CAM of the top 5 classes in one call against 5 calls, and the
   gradients at every tap (SISE's call) of 3 classes in one call against 3.
4. Captum's LayerGradCam (0.9.0, when importable) on the eager torch model at the same tap
   (torch with the same thread count, then both on one thread), in blocks of runs taking
   turns with ours: seconds and Pearson r of its map with ours.
Appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skimage

import onnx_sise
from onnx_sise.explainer import to_photo
from onnx_sise.methods.cam import class_activation_map
from onnx_sise.model.session import ExplainableModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_levers import interleaved  # noqa: E402
from bench_preparation import machine, pearson  # noqa: E402

PHOTO = Path(skimage.__file__).parent / "data" / "coffee.png"
# The deepest tap as a torch module: its input is the tensor Grad-CAM uses (Lite0's head
# ReLU6 module also runs on the stem, so its output is not that tensor).
TORCH_TAPS = {"efficientnet-lite0": "_avg_pooling", "resnet50": "avgpool"}


def warmed_interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns, after one warm-up each."""
    for call in calls.values():
        call()
    return interleaved(calls, repeats)


def in_blocks(calls: dict[str, Callable[[], object]], repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds of each call, run `repeats` times in a row, the calls taking turns
    by blocks, `rounds` times. For a peer on torch: right after an onnxruntime run its
    OpenMP team waits for cores that onnxruntime's threads still spin on, so runs that
    alternate call by call would charge it for our threads."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def to_photo_after_a_run(model: ExplainableModel, x: np.ndarray, saliency: np.ndarray,
                         repeats: int) -> float:
    """Median seconds of to_photo right after an onnxruntime run (the run not counted)."""
    times = []
    for _ in range(repeats):
        model.scores(x)
        start = time.perf_counter()
        to_photo(saliency, (224, 224))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def exported(name: str, work: Path) -> Path:
    from onnx_sise_export import export_zoo

    path = work / f"{name}.sise.onnx"
    if not path.is_file():
        start = time.perf_counter()
        export_zoo(name, str(path))
        print(f"exported {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def captum_gradcam(name: str, threads: int) -> tuple[Callable[[np.ndarray, int], np.ndarray], str] | None:
    """Captum's LayerGradCam on the eager zoo model at the deepest tap (ReLU applied, as
    ours): a function of (x (C, H, W), target) -> map (h, w), and the version; None where
    captum cannot be imported."""
    try:
        import captum
        import torch
        from captum.attr import LayerGradCam
    except ImportError:
        return None
    from onnx_sise_export import build_zoo_model

    torch.set_num_threads(threads)
    model, _ = build_zoo_model(name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layer = dict(model.named_modules())[TORCH_TAPS[name]]
    gradcam = LayerGradCam(model, layer)

    def run(x: np.ndarray, target: int) -> np.ndarray:
        image = torch.from_numpy(x[None])
        return gradcam.attribute(image, target=target, relu_attributions=True,
                                 attribute_to_layer_input=True)[0, 0].detach().numpy()

    return run, captum.__version__


def measure(name: str, path: Path, repeats: int, threads: int, lines: list[str]) -> None:
    explainer = onnx_sise.Explainer(path, threads=threads)
    model, info = explainer.model, explainer.info
    x, _ = explainer.preprocess(PHOTO)
    deepest = len(info.taps) - 1
    target = int(np.argmax(model.scores(x)))
    onehot = np.zeros((1, info.num_classes), np.float32)
    onehot[0, target] = 1
    zeros = np.zeros_like(onehot)
    top5 = np.argsort(-model.scores(x), kind="stable")[:5].tolist()
    top3 = np.zeros((3, info.num_classes), np.float32)
    top3[np.arange(3), top5[:3]] = 1
    call = model.gradients(x, zeros, onehot, from_tap=deepest)
    features = call.features[0][deepest]
    ours = explainer.explain(x, target, method="gradcam")
    calls: dict[str, Callable[[], object]] = {
        "F": lambda: model.scores(x),
        "G_none": lambda: model.gradients(x, zeros, onehot, from_tap=len(info.taps)),
        "G_deep": lambda: model.gradients(x, zeros, onehot, from_tap=deepest),
        "G_all": lambda: model.gradients(x, zeros, onehot),
        "E": lambda: explainer.explain(x, target, method="gradcam"),
        "map": lambda: class_activation_map(features.activations, features.gradients, "gradcam"),
        "top-5 one call": lambda: explainer.explain_targets(x, top5, method="gradcam"),
        "top-5 five calls": lambda: [explainer.explain(x, c, method="gradcam") for c in top5],
        "3 targets every tap, one call": lambda: model.gradients(x, top3),
        "3 targets every tap, three calls": lambda: [model.gradients(x, row[None]) for row in top3],
    }
    t = warmed_interleaved(calls, repeats)
    deep_map = ours.block_maps[info.taps[-1].name]
    t["to_photo"] = warmed_interleaved({"to_photo": lambda: to_photo(deep_map, (224, 224))}, repeats)["to_photo"]
    t["to_photo after a run"] = to_photo_after_a_run(model, x, deep_map, repeats)
    captum = captum_gradcam(name, threads)
    if captum is not None:
        blocks = in_blocks({"Captum": lambda: captum[0](x, target), "E": calls["E"]}, repeats)
        t["Captum"], t["E blocks"] = blocks["Captum"], blocks["E"]
        single = onnx_sise.Explainer(path, threads=1)
        alone = captum_gradcam(name, 1)
        assert alone is not None
        blocks = in_blocks({"Captum": lambda: alone[0](x, target),
                            "E": lambda: single.explain(x, target, method="gradcam")}, repeats)
        t["Captum 1"], t["E 1"] = blocks["Captum"], blocks["E"]
    backward = t["G_deep"] - t["G_none"]
    ratio = t["E"] / (t["F"] + backward)
    row = (f"| {name} | {t['F']:.4f} | {t['G_none']:.4f} | {t['G_deep']:.4f} | {backward:.4f} | {t['G_all']:.4f} | "
           f"{t['E']:.4f} | **{ratio:.2f}** | {t['E'] / t['G_deep']:.2f} |")
    print(row, flush=True)
    lines += ["", f"### {name}, target {target} ({info.label(target)}), {info.taps[-1].name} "
                  f"({info.taps[-1].channels}@{info.taps[-1].height}x{info.taps[-1].width})", "",
              "| model | F: forward s | G_none: gradient call, no tap s | G_deep: to the deepest tap s | B = G_deep - "
              "G_none s | G_all: every tap s | E: Grad-CAM end to end s | E / (F + B) | E / G_deep |",
              "|---|---|---|---|---|---|---|---|---|", row, "",
              f"The rest of E: the map from the features {t['map'] * 1e3:.2f} ms; to_photo (min-max and resize to "
              f"224 x 224 with the compiled core's kernels) {t['to_photo'] * 1e3:.2f} ms on its own, "
              f"{t['to_photo after a run'] * 1e3:.2f} ms right after an onnxruntime run.", "",
              "| several targets | one call s | separate calls s | separate / one |", "|---|---|---|---|",
              f"| Grad-CAM of the top 5 classes (Explainer) | {t['top-5 one call']:.4f} | {t['top-5 five calls']:.4f} | "
              f"{t['top-5 five calls'] / t['top-5 one call']:.2f} |",
              f"| gradients at every tap of 3 classes (SISE's call) | {t['3 targets every tap, one call']:.4f} | "
              f"{t['3 targets every tap, three calls']:.4f} | "
              f"{t['3 targets every tap, three calls'] / t['3 targets every tap, one call']:.2f} |"]
    if captum is not None:
        r = pearson(captum[0](x, target), ours.block_maps[info.taps[-1].name])
        lines += ["", f"Captum {captum[1]} LayerGradCam at the same tap (eager torch, {threads} threads), in blocks "
                      f"of runs taking turns with ours (E again): Captum {t['Captum']:.4f} s, E {t['E blocks']:.4f} s, "
                      f"E / Captum = **{t['E blocks'] / t['Captum']:.2f}**; on one thread each (torch's per-op "
                      f"thread team waits longest on a busy machine): Captum {t['Captum 1']:.4f} s, E {t['E 1']:.4f} s, "
                      f"E / Captum = **{t['E 1'] / t['Captum 1']:.2f}**; map r = {r:.4f}."]
    else:
        lines += ["", "Captum is not installed here: no LayerGradCam row."]
    print("\n".join(lines[-12:]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="efficientnet-lite0,resnet50", help="zoo models (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="runs of each call (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime and torch threads (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=None, help="folder of the exports, kept (default: a temporary one)")
    args = parser.parse_args()
    header = (f"machine: {machine()}; {platform.platform()}; provider: CPUExecutionProvider, onnxruntime "
              f"{ort.__version__}, {args.threads} threads; photo {PHOTO.name}; medians of {args.repeats} runs "
              "taking turns; the machine is shared with other workers, so compare figures within this run only")
    print(header, flush=True)
    lines = ["", f"## {time.strftime('%Y-%m-%d')}: the gradient call and Grad-CAM end to end (`python "
                 f"benchmarks/bench_gradient.py --zoo {args.zoo} --repeats {args.repeats} --threads {args.threads}`)",
             "", header]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in [n for n in args.zoo.split(",") if n]:
            measure(name, exported(name, work), args.repeats, args.threads, lines)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as results:
        results.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
