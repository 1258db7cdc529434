"""ResNet-50 SISE and Ada-SISE on this machine's CPU, on each backend, against the SISE
paper's Tesla T4 times (9.21 s and 6.29 s).

    python benchmarks/resnet50_vs_paper.py [--model resnet50.sise.onnx] [--threads 2] [--repeats 2]

Backends: onnxruntime float32; OpenVINO bf16 (provider="openvino", precision="bf16"); the
int8 scoring variant with its first 12 convolutions in float (onnx_sise_export
write_scoring_variant, the default float_layers). The zoo's ResNet-50 has random weights,
so the maps here say nothing of fidelity: that is measured on Lite0 over the 34 photos
(bench_openvino.py, bench_int8.py in RESULTS.md), and a backend is recommended for a method
only where its worst map r there is >= 0.95. Appends the table and the command to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_preparation import machine  # noqa: E402
from photo_set import photo_set  # noqa: E402

from onnx_sise import Explainer  # noqa: E402

PAPER_T4 = {"sise": 9.21, "ada-sise": 6.29}  # SISE paper, ResNet-50 on a Tesla T4 (GPU), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable ResNet-50 (default: export one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure, median (default: 2)")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache (default: photo_set's)")
    args = parser.parse_args()
    from onnx_sise_export import export_zoo
    from onnx_sise_export.variants import calibration_batches, write_scoring_variant

    photos = photo_set(args.folder)
    coffee = next(p for p in photos if p.path.name == "coffee.png")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "resnet50.sise.onnx"
            export_zoo("resnet50", str(model))
        reference = Explainer(model, threads=args.threads)
        int8 = Path(tmp) / "resnet50.int8.onnx"
        write_scoring_variant(model, int8, "int8", calibration_batches(reference, [p.path for p in photos[-8:]]))
        backends = {
            "onnxruntime f32": reference,
            "OpenVINO bf16": Explainer(model, threads=args.threads, provider="openvino", precision="bf16"),
            "onnxruntime int8 (12 float convolutions)": Explainer(model, threads=args.threads, scoring_model=int8),
        }
        seconds: dict[tuple[str, str], list[float]] = {}
        passes: dict[str, int] = {}
        for _ in range(args.repeats):
            for method in PAPER_T4:
                for name, explainer in backends.items():
                    result = explainer.explain(coffee.path, target=coffee.target, method=method)
                    seconds.setdefault((method, name), []).append(result.seconds)
                    passes[method] = result.passes
                    print(f"{method} {name}: {result.seconds:.1f} s ({result.passes} passes)", flush=True)
    head = ["| method | passes | " + " | ".join(f"{n} s" for n in backends) + " | paper, Tesla T4 s |",
            "|" + "---|" * (len(backends) + 3)]
    rows = [f"| {m} | {passes[m]} | " + " | ".join(f"{statistics.median(seconds[(m, n)]):.1f}" for n in backends)
            + f" | {PAPER_T4[m]:.2f} |" for m in PAPER_T4]
    command = "python benchmarks/resnet50_vs_paper.py " + " ".join(sys.argv[1:])
    text = (f"\n## {datetime.date.today()}: `{command}`\n\n{machine()}; {args.threads} threads; ResNet-50 of the zoo "
            f"(random weights: speed only), coffee.png, median of {args.repeats}.\n\n" + "\n".join(head + rows) + "\n")
    print(text)
    with (HERE / "RESULTS.md").open("a", encoding="utf-8") as results:
        results.write(text)


if __name__ == "__main__":
    main()
