"""Are our maps better? Every method x every metric on the photo set, with 95 % bootstrap
intervals and paired wins/losses, then the fusion study (benchmarks/fusion_study.py).

    python benchmarks/quality.py [--model lite0.sise.onnx] [--photos N]
                                 [--methods a,b,... | default | refinements | all]
                                 [--parts methods,fusion] [--steps 100] [--rise-masks 2000]
                                 [--folder PHOTOS] [--work DIR] [--cached-only]

The photos are benchmarks/photo_set.py's (34 real photos from PyPI packages; 22 with boxes
get every metric, the others the model-truth metrics).

`make quality` runs it with the defaults, `make quality-refinements` with SIGCAM and the
UCAG refinements. Each method's report, and each photo's row of it, is kept in --work
(default ~/.cache/onnx_sise/quality, keyed by method, options and photo set or photo), so
a run cut off goes on from the photo where it stopped; --cached-only computes nothing and
tabulates what --work holds (a part or method with nothing kept is left out). Appends its
tables and the command to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_preparation import machine  # noqa: E402
from fusion_study import VARIANTS, study  # noqa: E402
from photo_set import Photo, photo_set  # noqa: E402

from onnx_sise import Explainer  # noqa: E402
from onnx_sise.evaluation import METRICS  # noqa: E402
from onnx_sise.evaluation.annotations import load_annotations  # noqa: E402
from onnx_sise.evaluation.evaluate import image_row, summarised  # noqa: E402
from onnx_sise.evaluation.report import paired_table, table  # noqa: E402
from onnx_sise.methods import METHODS  # noqa: E402

# SIGCAM (an optimised mask: 40-150 s a photo here) and the UCAG refinements (n explanations
# of patches each) are measured in runs of their own: --methods sigcam,ucag-gradcam,...
BASE_METHODS = [m for m in METHODS if m != "sigcam" and not m.startswith("ucag-")]
DEFAULT_METHODS = BASE_METHODS + [
    "sise --fusion hard", "ada-sise --fusion hard"]  # the papers' literal fusion, beside our default
REFINEMENTS = [m for m in METHODS if m not in BASE_METHODS]
METHOD_SETS = {"default": DEFAULT_METHODS, "refinements": REFINEMENTS, "all": DEFAULT_METHODS + REFINEMENTS}
FAITHFULNESS = ["deletion", "insertion", "drop", "increase"]


def model_or_export(model: Path | None, folder: Path) -> Path:
    """`model`, or an explainable Lite0 exported into `folder`."""
    if model is not None:
        return model
    from onnx_sise_export import export_zoo

    path = folder / "lite0.sise.onnx"
    export_zoo("efficientnet-lite0", str(path))
    return path


def annotations_of(photos: list[Photo], folder: Path) -> Path:
    """An annotation file for `photos` (all in one folder), written into `folder`."""
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": [{"file": p.path.name, "target": p.target, "boxes": [list(b) for b in p.boxes]}
                                           for p in photos]}), encoding="utf-8")
    return path


def annotated_cli_run(folder: Path, photos: list[Photo], model: Path | None, argv: list[str], threads: int | None,
                      report_name: str) -> dict:
    """`python -m onnx_sise <argv[0]> MODEL --images ... --annotations ... <argv[1:]>` over
    `photos` (of photo_set, all in one folder), with `model` or a Lite0 exported into
    `folder`; the report JSON `report_name` it wrote."""
    from onnx_sise.cli import main

    model = model_or_export(model, folder)
    out = folder / "out"
    command = [argv[0], str(model), "--images", str(photos[0].path.parent), "--annotations",
               str(annotations_of(photos, folder)), *argv[1:], "--out", str(out),
               *(["--threads", str(threads)] if threads else [])]
    code = main(command)
    if code:
        raise SystemExit(code)
    return json.loads((out / report_name).read_text())


def method_and_options(label: str) -> tuple[str, dict[str, object]]:
    """("sise", {"fusion": "hard"}) for "sise --fusion hard": a method and options as on the
    command line (numbers as numbers)."""
    method, *rest = label.split()
    options: dict[str, object] = {}
    for flag, value in zip(rest[::2], rest[1::2]):
        options[flag.lstrip("-").replace("-", "_")] = json.loads(value) if value[:1].isdigit() else value
    return method, options


def cache_path(work: Path, key: dict) -> Path:
    """Where the result for `key` is kept in `work`: under a hash of the key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return work / f"{key['part']}-{digest}.json"


def cached(work: Path, key: dict) -> dict | None:
    """The result kept for `key`, or None."""
    path = cache_path(work, key)
    return json.loads(path.read_text()) if path.is_file() else None


def cached_report(work: Path, key: dict, compute) -> dict:  # noqa: ANN001
    """compute()'s result, kept in `work` under a hash of `key`."""
    found = cached(work, key)
    if found is not None:
        return found
    path = cache_path(work, key)
    result = compute()
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(path)
    return result


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="explainable Lite0 (default: export one)")
    parser.add_argument("--photos", type=int, default=None, help="use the first N photos (default: all)")
    parser.add_argument("--methods", default="default",
                        help="methods to compare, each with options as on the command line: 'sise --fusion hard'; "
                             "or default (every method but SIGCAM and UCAG, and the papers' fusion), refinements "
                             "(SIGCAM and UCAG on every method) or all")
    parser.add_argument("--parts", default="methods,fusion", help="methods, fusion (default: both)")
    parser.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    parser.add_argument("--rise-masks", type=int, default=2000, help="RISE masks (default: 2000)")
    parser.add_argument("--folder", type=Path, default=None, help="photo cache (default: photo_set's)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "onnx_sise" / "quality")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--cached-only", action="store_true",
                        help="compute nothing: tabulate what --work holds, methods cut off on the photos they reached")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    methods = METHOD_SETS.get(args.methods) or args.methods.split(",")
    parts = args.parts.split(",")
    metric_names = list(METRICS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        chosen = photo_set(args.folder)[:args.photos]
        model = model_or_export(args.model, Path(tmp))
        annotations = load_annotations(annotations_of(chosen, Path(tmp)), chosen[0].path.parent, 1000, need_truth=True)
        explainer = Explainer(model, threads=args.threads)
        photo_key = sorted((a.file.name, a.target) for a in annotations)
        sections = []
        partial: dict[str, int] = {}
        if "methods" in parts:
            report = {}
            for label in methods:
                method, options = method_and_options(label)
                if method.endswith("rise"):
                    options.setdefault("rise_masks", args.rise_masks)
                key = {"part": "methods", "method": method, "options": options, "steps": args.steps,
                       "photos": photo_key}
                print(f"{label} ...", flush=True)
                row_keys = [{"part": "row", "method": method, "options": options, "steps": args.steps,
                             "photo": [item.file.name, item.target]} for item in annotations]
                if args.cached_only:
                    rows = [row for row in (cached(args.work, k) for k in row_keys) if row is not None]
                    found = cached(args.work, key) or ({method: summarised(rows, metric_names)} if rows else None)
                    if found is None:
                        continue
                    measured = len(found[method]["images"])
                    if measured < len(annotations):
                        partial[label] = measured
                        label = f"{label} ({measured} photos)"
                else:
                    found = cached_report(args.work, key, lambda m=method, o=options: {m: summarised(
                        [cached_report(args.work, k, lambda i=item: image_row(explainer, i, m, metric_names,
                                                                              args.steps, o))
                         for k, item in zip(row_keys, annotations)], metric_names)})
                report[label] = found[method]
            sections.append(f"### Every method, {len(annotations)} photos: mean [95 % bootstrap interval]\n\n"
                            f"{table(report, metric_names)}\n"
                            + (f"\nMeasured on fewer photos (the run was stopped): {', '.join(partial)}; their "
                               "means and intervals are over those photos only.\n" if partial else ""))
            complete = {label: entry for label, entry in report.items() if len(entry["images"]) == len(annotations)}
            for reference in ("sise", "gradcam"):
                if reference in complete:
                    sections.append(f"### Paired, photo by photo: wins-losses against {reference}\n\n"
                                    f"{paired_table(complete, metric_names, reference)}\n")
        if "fusion" in parts:
            key = {"part": "fusion", "variants": [str(v) for v in VARIANTS], "steps": args.steps,
                   "photos": photo_key}
            fusion = cached(args.work, key) if args.cached_only else cached_report(
                args.work, key, lambda: study(explainer, annotations, metric_names, args.steps))
        if "fusion" in parts and fusion is not None:
            sections.append(f"### Fusion study, {len(annotations)} photos (benchmarks/fusion_study.py)\n\n"
                            f"{table(fusion, metric_names)}\n\nExact zeros in the map (mean over photos): "
                            + "; ".join(f"{name}: {100 * mean(r['zeros'] for r in entry['images']):.0f} %"
                                        for name, entry in fusion.items()) + "\n")
            for method in ("sise", "ada-sise"):
                reference = f"{method}, {VARIANTS[0].name}"
                subset = {name: entry for name, entry in fusion.items() if name.startswith(method + ",")}
                sections.append(f"### Fusion, paired against {reference}\n\n"
                                f"{paired_table(subset, metric_names, reference)}\n")
    header = (f"EfficientNet-Lite0 (real ImageNet weights); {machine()}; CPUExecutionProvider, onnxruntime "
              f"{ort.__version__}, Python {platform.python_version()}; {len(annotations)} photos (benchmarks/PHOTOS.md): "
              f"the ground-truth metrics (EBPG, mIoU, Bbox, pointing) on the {sum(a.has_truth for a in annotations)} "
              f"with boxes, the model-truth ones on all; total {time.perf_counter() - started:.0f} s")
    command = " ".join(["python benchmarks/quality.py", *sys.argv[1:]])
    text = f"\n## {time.strftime('%Y-%m-%d')}: `{command}`\n\n{header}\n\n" + "\n".join(sections)
    with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    run()
