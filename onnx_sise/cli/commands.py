"""What each command does, from parsed arguments: explain, evaluate, sanity, export, variant, serve, batch."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SiseError
from ..files.writing import check_output_name, identities, refuse_overwriting
from ..model.external_data import model_files_of
from ..model.info import ModelInfo
from .arguments import ZOO_GROUP, chosen_method, method_options
from .terminal import say

if TYPE_CHECKING:
    from ..evaluation.annotations import Annotation
    from ..explainer import Explainer

COMPARE_SUFFIX = "compare"  # <stem>.compare.png / .npy of `explain --compare`
SERVE_PACKAGES = ("kserve", "fastapi", "starlette", "uvicorn", "prometheus_client", "orjson")  # the serve extra
COMMAND_GROUP = "onnx_sise.commands"  # entry points of the export package: the work of `variant`


def run_explain(args: argparse.Namespace) -> None:
    from ..explainer import Explainer
    from ..files.writing import output_directory
    from ..images.decode import read_rgb
    from ..images.legend import with_legend
    from ..images.overlay import check_output_plan, output_paths, overlay, planned_suffixes, result_suffix, write_pair

    if args.batch_size < 1:
        raise SiseError(f"--batch-size must be at least 1, got {args.batch_size}")
    method = chosen_method(args)
    if args.threads is not None and args.threads < 1:
        raise SiseError(f"--threads must be at least 1, got {args.threads}")
    if args.compare and (len(args.target or []) > 1 or (args.top_k or 1) > 1):
        raise SiseError("--compare explains one class per image: give one --target, or none for the top-1")
    inputs = [*model_files_of(args.model), *([args.scoring_model] if args.scoring_model else []), *args.images]
    suffixes = [COMPARE_SUFFIX] if args.compare else planned_suffixes(method, args.target, args.top_k)
    check_output_plan(args.images, args.out, suffixes, inputs)
    for image in args.images:
        read_rgb(image)
    with output_directory(args.out):
        explainer = Explainer(args.model, provider=args.provider, threads=args.threads, batch_size=args.batch_size,
                              precision=args.precision, cache_dir=args.cache_dir, scoring_model=args.scoring_model,
                              resize=args.resize)
        if explainer.prepared is not None:
            how = "reused from the cache" if explainer.prepared.cached else "prepared now and cached"
            say(f"{args.model} is a plain ONNX model: explainable version {how}: {explainer.prepared.path}")
            say(describe_input(explainer.info))
        for image in args.images:
            rgb = read_rgb(image)
            if args.compare:
                write_comparison(explainer, image, rgb, args)
                continue
            results = explainer.explain_targets(rgb, args.target, top_k=args.top_k, method=method,
                                                progress=sys.stderr.isatty() and not args.json,
                                                max_seconds=args.max_seconds, **method_options(args))
            for result in results:
                png_path, npy_path = output_paths(image, args.out, result_suffix(method, result.target, len(results)))
                picture = overlay(rgb, result.saliency)
                if args.legend:
                    picture = with_legend(picture, f"{method} | class {result.target} {result.label} | "
                                                   f"p={result.score:.3f}")
                write_pair(picture, result.saliency, png_path, npy_path)
                if args.json:
                    say(json.dumps({"image": str(image), "overlay": str(png_path), "map": str(npy_path),
                                    **result.summary()}))
                else:
                    used = " ".join(f"{n}={c}" for n, c in result.masks_used.items()) or "none"
                    say(f"{image}: class {result.target} ({result.label}) score {result.score:.3f} | "
                        f"masks {used} | {result.seconds:.2f}s -> {png_path}")
            if len(results) > 1 and not args.json:
                separate = sum(r.forward_passes for r in results)
                say(f"{image}: {results[0].passes} masked passes for {len(results)} targets "
                    f"({separate - results[0].passes} saved by sharing)")


def write_comparison(explainer: Explainer, image: Path, rgb: np.ndarray, args: argparse.Namespace) -> None:
    """`--compare`: each method's map of one class, in one picture and one .npy."""
    from ..images.compare import compare_grid
    from ..images.legend import with_legend
    from ..images.overlay import output_paths, write_pair

    target = args.target[0] if args.target else None
    results = [explainer.explain(rgb, target, method=m, max_seconds=args.max_seconds, **method_options(args))
               for m in args.compare]
    first = results[0]
    grid = compare_grid(rgb, f"class {first.target} {first.label} p={first.score:.3f}",
                        [(f"{r.method} {r.seconds:.1f}s", r.saliency) for r in results])
    if args.legend:
        grid = with_legend(grid, None)
    png_path, npy_path = output_paths(image, args.out, COMPARE_SUFFIX)
    write_pair(grid, np.stack([r.saliency for r in results]), png_path, npy_path)
    if args.json:
        say(json.dumps({"image": str(image), "overlay": str(png_path), "map": str(npy_path),
                        "methods": [r.summary() for r in results]}))
    else:
        say(f"{image}: class {first.target} ({first.label}) score {first.score:.3f} | "
            f"{', '.join(f'{r.method} {r.seconds:.2f}s' for r in results)} -> {png_path}")


def run_evaluate(args: argparse.Namespace) -> None:
    from ..evaluation import GROUND, METRICS
    from ..evaluation.evaluate import evaluate
    from ..evaluation.report import table, write_report
    from ..files.writing import output_directory
    from ..progress import ProgressBar

    if args.steps < 1:
        raise SiseError("--steps must be at least 1")
    need_truth = any(METRICS[m].truth == GROUND for m in args.metrics)
    explainer, annotations = annotated_run(args, evaluate_outputs(args), need_truth)
    with output_directory(args.out):
        bar = ProgressBar(len(annotations) * len(args.methods), "evaluate", unit="images", rate=True)
        if args.address is None:
            report = evaluate(explainer, annotations, args.methods, args.metrics, steps=args.steps,
                              on_image=lambda label: bar(1), **method_options(args))
        else:
            from ..batch.evaluate import evaluate_on_ray

            report = evaluate_on_ray(args.model, annotations, args.methods, args.metrics, steps=args.steps,
                                     address=args.address,
                                     actors=args.actors, threads=args.threads, batch_size=args.batch_size,
                                     resize=args.resize, on_image=lambda label: bar(1), **method_options(args))
        bar.close()
        json_path, csv_path = write_report(report, args.metrics, args.out)
        for line in table(report, args.metrics).splitlines():
            say(line)
        say(f"{len(annotations)} images; wrote {json_path} and {csv_path}")
        if args.stability:
            run_stability(explainer, annotations, args)


def run_stability(explainer: Explainer, annotations: list, args: argparse.Namespace) -> None:
    """evaluate --stability: the methods' maps under harmless changes (evaluation/stability.py)."""
    from ..evaluation.stability import CHANGES, evaluate_stability, stability_table, write_stability
    from ..progress import ProgressBar

    bar = ProgressBar(len(annotations) * len(args.methods), "stability")
    report = evaluate_stability(explainer, annotations, args.methods, CHANGES, on_image=lambda label: bar(1),
                                **method_options(args))
    bar.close()
    json_path, table_path = write_stability(report, args.out)
    for line in stability_table(report).splitlines():
        say(line)
    say(f"{len(annotations)} images; wrote {json_path} and {table_path}")


def evaluate_outputs(args: argparse.Namespace) -> list[Path]:
    """The files `evaluate` writes: the report, and the stability report with --stability."""
    from ..evaluation.report import report_paths
    from ..evaluation.stability import stability_paths

    return [*report_paths(args.out), *(stability_paths(args.out) if args.stability else ())]


def annotated_run(args: argparse.Namespace, outputs: Sequence[Path],
                  need_truth: bool) -> tuple[Explainer, list[Annotation]]:
    """evaluate's and sanity's explainer and annotations, after the checks made before any
    work: --batch-size and --threads, and `outputs` that would overwrite an input."""
    from ..evaluation.foreign_annotations import load_any_annotations
    from ..explainer import Explainer

    if args.batch_size < 1:
        raise SiseError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise SiseError(f"--threads must be at least 1, got {args.threads}")
    for output in outputs:
        refuse_output_over_inputs(output, [*model_files_of(args.model), args.annotations])
    explainer = Explainer(args.model, threads=args.threads, batch_size=args.batch_size, resize=args.resize)
    annotations = load_any_annotations(args.annotations, args.images, explainer.info.num_classes, need_truth,
                                       explainer.info.labels)
    annotated = [path for a in annotations for path in (a.file, *([a.mask] if a.mask else []))]
    for output in outputs:
        refuse_overwriting(output, identities(annotated))
    return explainer, annotations


def run_sanity(args: argparse.Namespace) -> None:
    from ..evaluation.report import sanity_paths, sanity_table, write_sanity_report
    from ..evaluation.sanity import model_proto, parameterised_layers, parse_depths, sanity
    from ..files.writing import output_directory
    from ..progress import ProgressBar

    if args.weights_seed < 0:
        raise SiseError(f"--weights-seed must be at least 0, got {args.weights_seed}")
    explainer, annotations = annotated_run(args, sanity_paths(args.out), need_truth=False)
    depths = parse_depths(args.depths, len(parameterised_layers(model_proto(explainer))))
    with output_directory(args.out):
        bar = ProgressBar((len(depths) + 1) * len(annotations) * len(args.methods), "sanity")
        report = sanity(explainer, annotations, args.methods, depths, weights_seed=args.weights_seed,
                        on_image=lambda label: bar(1), **method_options(args))
        bar.close()
        json_path, csv_path = write_sanity_report(report, args.out)
        for line in sanity_table(report).splitlines():
            say(line)
        say(f"{len(annotations)} images, {len(report['layers'])} layers re-drawn from the top (seed "
            f"{args.weights_seed}); Spearman and SSIM of each map against the trained model's (1 = unchanged); "
            f"wrote {json_path} and {csv_path}")


def describe_input(info: ModelInfo) -> str:
    spec = info.input
    return (f"input: {spec.layout} {spec.height}x{spec.width} {spec.color}, x = (pixel * {spec.scale:.6g} - "
            f"{list(spec.mean)}) / {list(spec.std)}; output: {info.output_kind} (change with `export` flags)")


def refuse_output_over_inputs(output: Path, inputs: Sequence[Path]) -> None:
    """Before any work: an output name a file system accepts, not in a directory's place,
    and not one of the run's inputs."""
    check_output_name(output)
    refuse_overwriting(output, identities(inputs))


def run_export(args: argparse.Namespace) -> None:
    refuse_output_over_inputs(args.output, model_files_of(args.model) if args.model else [])
    taps = tuple(t.strip() for t in args.taps.split(",") if t.strip())
    if args.zoo:
        export_zoo = plugin(ZOO_GROUP, args.zoo, "export --zoo")
        info = export_zoo(args.zoo, str(args.output), tap_modules=taps, output_kind=args.output_kind or "logits",
                          check=args.check or "none")
    else:
        from ..model.preparation import InputOverrides, prepare_onnx

        overrides = InputOverrides(layout=args.layout, size=args.input_size, color=args.color, scale=args.scale,
                                   mean=args.mean, std=args.std, output_kind=args.output_kind)
        info = prepare_onnx(args.model, args.output, overrides, taps, check=args.check or "auto")
        say(describe_input(info))
    blocks = ", ".join(f"{t.source} {t.channels}@{t.height}x{t.width}" for t in info.taps)
    checks = ", ".join(f"{k} {v:.1e}" for k, v in info.verification.items())
    say(f"wrote {args.output}: {info.model_name}, {len(info.taps)} taps ({blocks}); measured errors: {checks}")


def run_batch(args: argparse.Namespace) -> None:
    """`batch`: onnx_sise.batch.explain_dataset, Ray imported only now."""
    try:
        from ..batch import explain_dataset
    except ImportError as exc:  # pragma: no cover - the package imports ray lazily; a broken install
        raise SiseError(f"batch needs Ray ({exc.name} is missing): pip install 'onnx_sise[ray]'") from None

    for name in ("batch_size", "actors", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SiseError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    summary = explain_dataset(args.model, args.input, args.out, args.method, target=args.target,
                              address=args.address, actors=args.actors, threads=args.threads,
                              provider=None if args.provider == "auto" else args.provider,
                              batch_size=args.batch_size, resize=args.resize, retry_errors=args.retry_errors,
                              progress=sys.stderr.isatty(), **method_options(args))
    pool = (f" on {summary.plan.actors} actors x {summary.plan.threads} threads ({summary.plan.provider})"
            if summary.plan else "")
    say(f"{summary.images} images: {summary.explained} explained, {summary.errors} errors, {summary.skipped} done "
        f"before{pool} in {summary.seconds:.1f}s ({summary.images_per_second:.2f} images/s); manifest: "
        f"{summary.manifest}")


def run_variant(args: argparse.Namespace) -> None:
    write_variant = plugin(COMMAND_GROUP, "variant", "variant")
    if args.precision == "int8" and not args.calibrate:
        raise SiseError("int8 needs --calibrate with a few photos like the ones you will explain")
    refuse_output_over_inputs(args.output, [*model_files_of(args.model), *args.calibrate])
    if args.float_layers is not None and (args.precision != "int8" or args.float_layers < 0):
        raise SiseError("--float-layers is a whole number of convolutions from 0, and only for --precision int8")
    write_variant(args.model, args.output, args.precision, args.calibrate, args.float_layers)
    say(f"wrote {args.output}: {args.precision} masked-pass graph of {args.model}; use it with "
          f"`explain --scoring-model {args.output}` (check its maps against float32 on your photos)")


def run_serve(args: argparse.Namespace) -> None:
    for flag in ("slots", "max_instances", "max_body_bytes", "max_pixels", "batch_size"):
        if getattr(args, flag) < 1:
            raise SiseError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    for flag in ("queue", "retry_after", "grace_seconds"):
        if getattr(args, flag) < 0:
            raise SiseError(f"--{flag.replace('_', '-')} must be at least 0, got {getattr(args, flag)}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise SiseError(f"--max-seconds must be a positive number, got {args.max_seconds}")
    try:
        from ..serve.model import ServeSettings
        from ..serve.server import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_PACKAGES:
            raise
        raise SiseError(f"serve needs the kserve SDK ({exc.name} is missing): pip install 'onnx_sise[serve]'") from None
    name = args.name or args.model.name.removesuffix(".onnx").removesuffix(".sise")
    settings = ServeSettings(threads=args.threads, batch_size=args.batch_size, max_pixels=args.max_pixels,
                             slots=args.slots, queue=args.queue, retry_after=args.retry_after,
                             max_instances=args.max_instances, max_seconds=args.max_seconds)
    serve(args.model, name, settings, http_port=args.http_port, grpc_port=args.grpc_port,
          enable_grpc=not args.no_grpc, max_body_bytes=args.max_body_bytes, grace_seconds=args.grace_seconds)


def plugin(group: str, name: str, command: str) -> Callable[..., object]:
    """The function entry point `name` of `group` names (the export package registers
    them), loaded: the runtime never imports that package by name."""
    found = [entry for entry in entry_points(group=group) if entry.name == name]
    if not found:
        raise SiseError(f"{command} comes with the export package: pip install 'onnx_sise[export]'")
    try:
        return found[0].load()
    except ImportError as exc:
        raise SiseError(f"{command} needs torch ({exc.name} is missing): pip install 'onnx_sise[export]'") from None


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "explain": run_explain, "evaluate": run_evaluate, "sanity": run_sanity, "export": run_export,
    "variant": run_variant, "serve": run_serve, "batch": run_batch,
}
