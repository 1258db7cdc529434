"""Maps of every method on the zoo models, saved before the package's layout moved
(issue 14), and the code that makes them again through the public API only, so that
a test can prove the move changed no map, bit for bit.

`python tests/saved_maps.py` writes tests/data/maps_before_layout.npz; run it only on
the commit whose maps are the reference (SAVED_AT)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

SAVED = Path(__file__).resolve().parent / "data" / "maps_before_layout.npz"
SAVED_AT = "6e77575"
MODELS = ("efficientnet-lite0", "resnet50")
# ResNet-50 without the UCAG refinements: UCAG runs the same base methods on patches
# (checked on Lite0) and would take minutes on two cores.
REFINED_ON = ("efficientnet-lite0",)
THREADS = 2
# Small settings, so that every method runs in seconds; the same before and after.
# fusion="hard": the maps were saved when the paper's hard gate was the default.
OPTIONS: dict[str, object] = dict(mu=0.5, layer="block3", rise_masks=120, sigcam_iterations=2, sigcam_warmup=1,
                                sigcam_steps=2, ucag_n=2, fusion="hard")


def photo() -> np.ndarray:
    """A 64 x 96 RGB crop of scikit-image's coffee.png (saved with the maps too)."""
    import skimage

    bgr = cv2.imread(str(Path(skimage.__file__).parent / "data" / "coffee.png"), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[::-1][::6, ::6][:64, :96, ::-1][::-1])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def methods_on(model: str) -> list[str]:
    from onnx_sise.methods import METHODS, UCAG_BASES

    return list(METHODS) if model in REFINED_ON else list(UCAG_BASES)


def maps_of(model_path: Path, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
    """The saliency map of each method, on the top-1 class, through the public API."""
    from onnx_sise import Explainer

    explainer = Explainer(model_path, threads=THREADS)
    maps = {}
    for method in methods:
        started = time.perf_counter()
        maps[method] = explainer.explain(image, method=method, **OPTIONS).saliency
        print(f"{model_path.name} {method}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return maps


def main() -> None:
    import tempfile

    from onnx_sise_export import export_zoo

    image = photo()
    arrays: dict[str, np.ndarray] = {"photo": image}
    with tempfile.TemporaryDirectory() as folder:
        for model in MODELS:
            path = Path(folder) / f"{model}.sise.onnx"
            export_zoo(model, str(path))
            for method, saliency in maps_of(path, image, methods_on(model)).items():
                arrays[f"{model}/{method}"] = saliency
                print(model, method, saliency.shape, saliency.dtype, float(saliency.max()), flush=True)
    meta = dict(commit=SAVED_AT, cpu=cpu_name(), threads=THREADS, options=OPTIONS)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    SAVED.parent.mkdir(exist_ok=True)
    np.savez_compressed(SAVED, **arrays)
    print("wrote", SAVED, SAVED.stat().st_size, "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
