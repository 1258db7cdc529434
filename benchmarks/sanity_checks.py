"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): the cascading
randomisation of EfficientNet-Lite0's weights (`python -m onnx_sise sanity`), each method's
maps on the damaged model against its maps on the trained one, over the real photos of
benchmarks/photo_set.py.

    python benchmarks/sanity_checks.py [--model lite0.sise.onnx] [--photos N] [--methods a,b,...] [--depths 1,2,all]
    python benchmarks/sanity_checks.py --labels [--epochs 300]

Appends the table (methods x cascade depths: mean Spearman / mean SSIM) and the command to
benchmarks/RESULTS.md. A method whose maps stay close to 1 / 1 when the weights are gone
is not explaining the model.

`--labels` runs the data randomisation test instead (Adebayo et al. section 3.2): a
pretrained ImageNet model cannot be retrained here, so a small CNN is trained on
scikit-image's lfw_subset (100 faces, 100 non-faces, 25 x 25 grey, upsampled to 64 x 64
RGB), once with the true labels and once with the labels permuted (trained until it
memorises them), both exported to explainable ONNX with the export package; each
method's maps of held-out images (their true class) are compared between the two models.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from photo_set import photo_set
from quality import BASE_METHODS, HERE, annotated_cli_run, model_or_export

from onnx_sise.evaluation.report import sanity_table

DEPTHS = "1,2,all"  # the classifier, + the head convolution, every layer


SIDE = 64  # lfw_subset's 25 x 25 upsampled
HELD_OUT = 40  # images explained, 20 faces and 20 non-faces, never trained on


def lfw_images() -> tuple[np.ndarray, np.ndarray]:
    """(200, SIDE, SIDE, 3) uint8 RGB and labels (1 = face: the first 100)."""
    import cv2
    import skimage.data

    grey = skimage.data.lfw_subset()
    big = [cv2.resize((255 * g).round().astype(np.uint8), (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) for g in grey]
    return np.stack([np.repeat(b[..., None], 3, axis=2) for b in big]), (np.arange(200) < 100).astype(np.int64)


def small_cnn():  # noqa: ANN201
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 2))


def trained(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> tuple[object, float, int]:
    """A small CNN trained on (images, labels) with Adam until it fits them all or `epochs`
    pass: (model, training accuracy, epochs run)."""
    import torch

    torch.manual_seed(seed)
    model = small_cnn()
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    y = torch.from_numpy(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    accuracy, ran = 0.0, 0
    while ran < epochs and accuracy < 1.0:
        ran += 1
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(32):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).float().mean())
    return model.eval(), accuracy, ran


def data_randomisation(args: argparse.Namespace) -> None:
    """Adebayo et al. section 3.2 on lfw_subset: maps of a CNN trained on true labels
    against maps of the same CNN trained on permuted labels."""
    import torch

    from onnx_sise import Explainer
    from onnx_sise.evaluation.sanity import spearman, ssim
    from onnx_sise.model.info import InputSpec
    from onnx_sise_export import export_explainable

    started = time.perf_counter()
    images, labels = lfw_images()
    rng = np.random.default_rng(0)
    held = np.r_[rng.choice(100, HELD_OUT // 2, replace=False), 100 + rng.choice(100, HELD_OUT // 2, replace=False)]
    train = np.setdiff1d(np.arange(200), held)
    permuted = rng.permutation(labels[train])
    spec = InputSpec(height=SIDE, width=SIDE, scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    lines, maps = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, targets in (("true", labels[train]), ("permuted", permuted)):
            model, fit, epochs = trained(images[train], targets, args.epochs, seed=1)
            with torch.no_grad():
                x = (torch.from_numpy(images[held]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
                held_accuracy = float((model(x).argmax(1) == torch.from_numpy(labels[held])).float().mean())
            path = Path(tmp) / f"lfw-{name}.sise.onnx"
            export_explainable(model, path, model_name=f"lfw-cnn-{name}-labels", input_spec=spec,
                               labels=("non-face", "face"))
            lines.append(f"{name} labels: training accuracy {100 * fit:.1f}% after {epochs} epochs, held-out "
                         f"accuracy {100 * held_accuracy:.1f}%")
            explainer = Explainer(path, threads=args.threads)
            maps[name] = {m: [explainer.explain(images[i], target=int(labels[i]), method=m,
                                                **({"rise_masks": args.rise_masks} if m == "rise" else {})).saliency
                              for i in held] for m in args.methods.split(",")}
    rows = ["| method | Spearman | SSIM |", "|---|---|---|"]
    for method in maps["true"]:
        pairs = list(zip(maps["true"][method], maps["permuted"][method]))
        rho = [r for r in (spearman(a, b) for a, b in pairs) if math.isfinite(r)]  # NaN: a constant map
        rows.append(f"| {method} | {f'{np.mean(rho):.2f}' if rho else 'n/a'} | "
                    f"{np.mean([ssim(a, b) for a, b in pairs]):.2f} |")
    command = " ".join(["python", "benchmarks/sanity_checks.py", *sys.argv[1:]])
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores (shared with other jobs while measured); "
              f"provider: CPUExecutionProvider (onnxruntime {ort.__version__}); total "
              f"{time.perf_counter() - started:.0f} s")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nData randomisation test (Adebayo et al. 2018, "
            f"section 3.2): a small CNN (4 convolutions, 2 classes) trained on scikit-image's lfw_subset (faces / "
            f"non-faces, 25 x 25 upsampled to {SIDE} x {SIDE}) on {len(train)} images with the true labels and with "
            f"the labels permuted; mean Spearman / SSIM of each method's maps of the {HELD_OUT} held-out images "
            f"(their true class) between the two models (1 = the same maps). {'; '.join(lines)}. {header}.\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(text)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--methods", default=",".join(BASE_METHODS),
                        help="default: every method but SIGCAM and the UCAG refinements")
    parser.add_argument("--depths", default=DEPTHS, help=f"cascade depths, layers from the top (default: {DEPTHS})")
    parser.add_argument("--photos", type=int, default=None, help="the first N photos of photo_set.py (default: all)")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache (default: photo_set's)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks (default: 2000)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--labels", action="store_true",
                        help="run the data randomisation test on lfw_subset instead (default: off)")
    parser.add_argument("--epochs", type=int, default=300, help="--labels: most training epochs (default: 300)")
    args = parser.parse_args()
    if args.labels:
        data_randomisation(args)
        return
    photos = photo_set(args.folder)[:args.photos]
    chosen = [p.path.name for p in photos]
    started = time.perf_counter()
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = model_or_export(args.model, Path(tmp))
        for method in args.methods.split(","):  # one run per method: each row is printed as soon as it is measured
            folder = Path(tmp) / method
            folder.mkdir()
            done = annotated_cli_run(folder, photos, model, ["sanity", "--methods", method, "--depths", args.depths,
                                                              "--rise-masks", str(args.rise_masks)],
                                     args.threads, "sanity.json")
            report = {**done, "methods": {**report.get("methods", {}), **done["methods"]}}
            print(f"{method} done after {time.perf_counter() - started:.0f} s: {json.dumps(done['methods'])[:2000]}",
                  flush=True)
    header = (f"machine: {platform.machine()} {os.cpu_count()} cores (shared with other jobs while measured); "
              f"provider: CPUExecutionProvider (onnxruntime {ort.__version__}); {len(chosen)} photos "
              f"({', '.join(chosen)}), each explained for its annotated class; weights re-drawn from N(0, std^2) of "
              f"each tensor, seed 0, top layer first; total {time.perf_counter() - started:.0f} s")
    scores = {d: [round(r["score"], 4) for r in next(iter(report["methods"].values()))[d]["images"]]
              for d in next(iter(report["methods"].values()))}
    command = " ".join(["python", "benchmarks/sanity_checks.py", *sys.argv[1:]])
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\nCascading randomisation (Adebayo et al. "
                     f"2018) of EfficientNet-Lite0 (real ImageNet weights, {len(report['layers'])} layers): mean "
                     f"Spearman rank correlation / mean SSIM of each method's map against its map on the trained "
                     f"model (1 / 1 = unchanged). {header}. The damaged model's score of the class, per photo: "
                     f"{json.dumps(scores)}.\n\n{sanity_table(report)}\n")


if __name__ == "__main__":
    run()
