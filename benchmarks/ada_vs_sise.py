"""Ada-SISE against SISE (mu = 0) on real photos: maps kept per block, masked passes,
seconds, and the correlation of the two explanation maps.

    python benchmarks/ada_vs_sise.py [--model lite0.sise.onnx]

Appends a table and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from photo_set import FIRST_FIVE, photo_set

from onnx_sise import Explainer

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--photos", default=",".join(FIRST_FIVE),
                        help=f"photos of benchmarks/photo_set.py (default: {','.join(FIRST_FIVE)})")
    parser.add_argument("--folder", type=Path, default=None, help="cache folder of the photos (default: photo_set's)")
    args = parser.parse_args()
    chosen = [name for name in args.photos.split(",") if name]
    paths = {p.path.name: p.path for p in photo_set(args.folder) if p.path.name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from onnx_sise_export import export_zoo

            model = Path(tmp) / "lite0.sise.onnx"
            export_zoo("efficientnet-lite0", str(model))
        explainer = Explainer(model)
        rows = ["| photo | class | maps kept per block, SISE (mu = 0) | maps kept per block, Ada-SISE | "
                "passes SISE / Ada | seconds SISE / Ada | Pearson r of the maps |", "|---|---|---|---|---|---|---|"]
        for name, path in paths.items():
            sise = explainer.explain(path, method="sise")
            ada = explainer.explain(path, target=sise.target, method="ada-sise")
            r = float(np.corrcoef(sise.saliency.ravel(), ada.saliency.ravel())[0, 1])
            rows.append(f"| {name} | {sise.target} {sise.label} | {'/'.join(map(str, sise.masks_selected.values()))} | "
                        f"{'/'.join(map(str, ada.masks_selected.values()))} | {sise.passes} / {ada.passes} | "
                        f"{sise.seconds:.2f} / {ada.seconds:.2f} | {r:.3f} |")
            print(rows[-1])
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(f"\n## {time.strftime('%Y-%m-%d')}: `python benchmarks/ada_vs_sise.py`\n\n"
                     "EfficientNet-Lite0, top-1 class of each photo, 2 CPU cores, batch 32. Blocks: "
                     "16@112 / 24@56 / 40@28 / 112@14 / 1280@7.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
