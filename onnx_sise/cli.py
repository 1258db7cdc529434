"""Command line: `python -m onnx_sise explain|evaluate|export|variant ...` (also `onnx-sise`).

Bad input ends with one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

from .errors import SiseError
from .files.writing import check_output_name, identities, refuse_overwriting
from .model.external_data import model_files_of
from .model.info import OUTPUT_KINDS, ModelInfo
from .model.preparation.options import CHECKS

ZOO_GROUP, COMMAND_GROUP = "onnx_sise.zoo", "onnx_sise.commands"  # entry points of the export package
EXIT_BAD_INPUT = 2
# A run stopped by a signal exits with 128 + its number (130 SIGINT, 143 SIGTERM, 129
# SIGHUP), as a shell reports a process the signal killed.
EXIT_SIGNAL_BASE = 128
# stdout closed by its reader (`| head -1`): 128 + SIGPIPE, the status `set -o pipefail`
# sees from any tool that stops writing to a closed pipe.
EXIT_BROKEN_PIPE = 128 + 13
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class UsageError(SiseError):
    """The command line does not parse (an unknown option, a missing argument ...)."""


class StdoutError(SiseError):
    """stdout is closed, full or failing: what the CLI prints cannot be written."""


class BrokenPipe(StdoutError):
    """The reader of stdout went away (`| head -1`)."""


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwinds the run (not an Exception, so that no
    `except Exception` on the way swallows it) through every cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing a usage block and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{printable(message)} (see {self.prog} --help)")  # it may quote an argument


def build_parser() -> argparse.ArgumentParser:
    """The commands and their flags; the methods, their options and the metrics come from
    their registries (methods/registry.py, evaluation/registry.py)."""
    from .evaluation import METRICS
    from .methods import METHODS

    parser = OneLineParser(prog="onnx_sise", description="SISE saliency maps for ONNX image classifiers.")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain predictions on images")
    explain.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx)")
    explain.add_argument("images", type=Path, nargs="+", help="photos (PNG, JPEG, ...)")
    explain.add_argument("--out", type=Path, default=None, help="output directory (default: beside each image)")
    explain.add_argument("--method", choices=tuple(METHODS), default="sise", help="explanation method (default: sise)")
    explain.add_argument("--refine", choices=("none", "ucag"), default="none",
                         help="refine the method's map: ucag explains overlapping patches and folds them back, "
                              "--method gradcam --refine ucag = --method ucag-gradcam (default: none)")
    explain.add_argument("--target", type=class_ids, default=None,
                         help="class id(s) to explain, comma-separated, e.g. 967,968 (default: the top-1 class)")
    explain.add_argument("--top-k", type=int, default=None, help="explain the k best classes (default: off)")
    explain.add_argument("--batch-size", type=int, default=32, help="masked inputs per forward pass (default: 32)")
    explain.add_argument("--provider", choices=("cpu", "cuda"), default="cpu", help="onnxruntime provider (default: cpu)")
    explain.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    explain.add_argument("--max-seconds", type=float, default=None,
                         help="stop an image's explanation after this many seconds, exit code 2 (default: no limit)")
    explain.add_argument("--json", action="store_true", help="print one JSON object per image (default: off)")
    explain.add_argument("--scoring-model", type=Path, default=None,
                         help="fp16 or int8 copy of the masked-pass graph, written by the variant command "
                              "(default: the model's own float32 graph)")
    explain.add_argument("--cache-dir", type=Path, default=None,
                         help="where plain ONNX models are prepared once (default: $ONNX_SISE_CACHE or ~/.cache/onnx_sise)")
    add_method_options(explain)

    evaluate = commands.add_parser("evaluate", help="methods x metrics over annotated images",
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   description=evaluate_doc())
    evaluate.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx)")
    evaluate.add_argument("--images", type=Path, required=True, help="directory the annotation file's paths start from")
    evaluate.add_argument("--annotations", type=Path, required=True, help="annotation file (JSON, format above)")
    evaluate.add_argument("--methods", type=names_of(tuple(METHODS)), default=["sise"],
                          help=f"comma-separated, from {','.join(METHODS)} (default: sise)")
    evaluate.add_argument("--metrics", type=names_of(tuple(METRICS)), default=list(METRICS),
                          help=f"comma-separated, from {','.join(METRICS)} (default: all)")
    evaluate.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    evaluate.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass (default: 32)")
    evaluate.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    add_method_options(evaluate)
    evaluate.add_argument("--out", type=Path, default=Path("."),
                          help="directory for evaluation.json and evaluation.csv (default: .)")

    export = commands.add_parser("export", help="write an explainable ONNX (a plain ONNX needs onnx only; --zoo "
                                                "needs torch)")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("model", type=Path, nargs="?", help="a plain ONNX classifier to prepare")
    source.add_argument("--zoo", type=zoo_name, metavar="NAME",
                        help=f"a model to build and export: {', '.join(zoo_names()) or 'pip install onnx_sise[export]'}")
    export.add_argument("--layout", choices=("NCHW", "NHWC"), default=None,
                        help="input layout (default: inferred from the input shape)")
    export.add_argument("--input-size", type=size_pair, default=None,
                        help="H,W of the input (default: from the input shape)")
    export.add_argument("--color", choices=("RGB", "BGR"), default="RGB", help="channel order (default: RGB)")
    export.add_argument("--scale", type=float, default=1 / 255,
                        help="pixel (0..255) multiplier before mean/std (default: 1/255)")
    export.add_argument("--mean", type=triple, default=(0.0, 0.0, 0.0), help="per-channel mean (default: 0,0,0)")
    export.add_argument("--std", type=triple, default=(1.0, 1.0, 1.0), help="per-channel std (default: 1,1,1)")
    export.add_argument("-o", "--output", type=Path, required=True, help="path of the *.sise.onnx to write")
    export.add_argument("--output-kind", choices=OUTPUT_KINDS, default=None,
                        help="what the model emits: logits (Psi = softmax), probabilities (used as they are) or "
                             "sigmoid (multi-label logits, Psi = sigmoid) (default: logits for --zoo, "
                             "inferred from a final Softmax/Sigmoid node for a plain ONNX)")
    export.add_argument("--taps", default="", help="comma-separated taps: tensor names of a plain ONNX, module names "
                                                   "of a --zoo model (default: one per block, found automatically)")
    export.add_argument("--check", choices=CHECKS, default=None,
                        help="gradient check against central differences: float64 (onnx's reference evaluator, "
                             "exact, slow on big models), float32 (onnxruntime, a smoke check) or auto (float64 "
                             "where affordable) (default: auto for a plain ONNX; a --zoo export is checked "
                             "against torch autograd, and also this way when given)")

    variant = commands.add_parser("variant", help="write a copy of the masked-pass graph in another precision "
                                                   "(needs onnx)")
    variant.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx)")
    variant.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True,
                         help="fp32 (the graph alone, for CUDA graphs), fp16 for GPUs, int8 for CPUs with VNNI "
                              "(required)")
    variant.add_argument("--calibrate", type=Path, nargs="+", default=[],
                         help="int8: photos like the ones you will explain, each scored under 8 random coarse masks "
                              "to set the int8 ranges (default: none; int8 needs some)")
    variant.add_argument("-o", "--output", type=Path, required=True, help="path of the variant to write")
    return parser


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """A flag per option of the registered methods (--sigcam-theta for sigcam_theta), with
    its type, choices, default and help from the option's Domain: the options' one home."""
    from .methods import option_fields
    from .methods.options import domain_of

    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in option_fields().values():
        domain = domain_of(option)
        group = groups.get(domain.group) or groups.setdefault(domain.group, parser.add_argument_group(domain.group))
        shown = "" if "default:" in domain.help else f" (default: {option.default})"
        kind = {"int": int, "real": float}.get(domain.kind, str)
        group.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name, type=kind, default=option.default,
                           choices=domain.choices or None, help=domain.help + shown)


def evaluate_doc() -> str:
    from .evaluation.annotations import __doc__ as doc

    return doc or ""


def names_of(choices: tuple[str, ...]):  # noqa: ANN201
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown) or 'empty list'}: choose from {','.join(choices)}")
        return names

    return parse


def size_pair(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W like 224,224, got {text!r}") from None
    return height, width


def triple(text: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None
    return a, b, c


def class_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 967 or 967,968, got {text!r}") from None


def method_options(args: argparse.Namespace) -> dict[str, object]:
    """The method options given on the command line (every one has a flag)."""
    from .methods import option_fields

    return {name: getattr(args, name) for name in option_fields()}


def chosen_method(args: argparse.Namespace) -> str:
    """--method, or ucag-<method> with --refine ucag."""
    if args.refine == "none":
        return args.method
    if args.method.startswith("ucag-"):
        raise SiseError(f"--method {args.method} is already refined by UCAG: drop --refine or pick the plain method")
    return f"ucag-{args.method}"


def run_explain(args: argparse.Namespace) -> None:
    from .explainer import Explainer
    from .files.writing import output_directory
    from .images.decode import read_rgb
    from .images.overlay import check_output_plan, output_paths, planned_suffixes, result_suffix, write_outputs

    if args.batch_size < 1:
        raise SiseError(f"--batch-size must be at least 1, got {args.batch_size}")
    method = chosen_method(args)
    if args.threads is not None and args.threads < 1:
        raise SiseError(f"--threads must be at least 1, got {args.threads}")
    inputs = [*model_files_of(args.model), *([args.scoring_model] if args.scoring_model else []), *args.images]
    check_output_plan(args.images, args.out, planned_suffixes(method, args.target, args.top_k), inputs)
    for image in args.images:
        read_rgb(image)
    with output_directory(args.out):
        explainer = Explainer(args.model, provider=args.provider, threads=args.threads, batch_size=args.batch_size,
                              cache_dir=args.cache_dir, scoring_model=args.scoring_model)
        if explainer.prepared is not None:
            how = "reused from the cache" if explainer.prepared.cached else "prepared now and cached"
            say(f"{args.model} is a plain ONNX model: explainable version {how}: {explainer.prepared.path}")
            say(describe_input(explainer.info))
        for image in args.images:
            rgb = read_rgb(image)
            results = explainer.explain_targets(rgb, args.target, top_k=args.top_k, method=method,
                                                progress=sys.stderr.isatty() and not args.json,
                                                max_seconds=args.max_seconds, **method_options(args))
            for result in results:
                png_path, npy_path = output_paths(image, args.out, result_suffix(method, result.target, len(results)))
                write_outputs(rgb, result.saliency, png_path, npy_path)
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


def run_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import GROUND, METRICS
    from .evaluation.annotations import load_annotations
    from .evaluation.evaluate import evaluate
    from .evaluation.report import table, write_report
    from .explainer import Explainer
    from .files.writing import output_directory
    from .progress import ProgressBar

    if args.steps < 1 or args.batch_size < 1:
        raise SiseError("--steps and --batch-size must be at least 1")
    for report_path in (args.out / "evaluation.json", args.out / "evaluation.csv"):
        refuse_output_over_inputs(report_path, [*model_files_of(args.model), args.annotations])
    explainer = Explainer(args.model, threads=args.threads, batch_size=args.batch_size)
    need_truth = any(METRICS[m].truth == GROUND for m in args.metrics)
    annotations = load_annotations(args.annotations, args.images, explainer.info.num_classes, need_truth)
    annotated = [path for a in annotations for path in (a.file, *([a.mask] if a.mask else []))]
    for report_path in (args.out / "evaluation.json", args.out / "evaluation.csv"):
        refuse_overwriting(report_path, identities(annotated))
    with output_directory(args.out):
        bar = ProgressBar(len(annotations) * len(args.methods), "evaluate")
        report = evaluate(explainer, annotations, args.methods, args.metrics, steps=args.steps,
                          on_image=lambda label: bar(1), **method_options(args))
        bar.close()
        json_path, csv_path = write_report(report, args.metrics, args.out)
        for line in table(report, args.metrics).splitlines():
            say(line)
        say(f"{len(annotations)} images; wrote {json_path} and {csv_path}")


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
        from .model.preparation import InputOverrides, prepare_onnx

        overrides = InputOverrides(layout=args.layout, size=args.input_size, color=args.color, scale=args.scale,
                                   mean=args.mean, std=args.std, output_kind=args.output_kind)
        info = prepare_onnx(args.model, args.output, overrides, taps, check=args.check or "auto")
        say(describe_input(info))
    blocks = ", ".join(f"{t.source} {t.channels}@{t.height}x{t.width}" for t in info.taps)
    checks = ", ".join(f"{k} {v:.1e}" for k, v in info.verification.items())
    say(f"wrote {args.output}: {info.model_name}, {len(info.taps)} taps ({blocks}); measured errors: {checks}")


def run_variant(args: argparse.Namespace) -> None:
    write_variant = plugin(COMMAND_GROUP, "variant", "variant")
    if args.precision == "int8" and not args.calibrate:
        raise SiseError("int8 needs --calibrate with a few photos like the ones you will explain")
    refuse_output_over_inputs(args.output, [*model_files_of(args.model), *args.calibrate])
    write_variant(args.model, args.output, args.precision, args.calibrate)
    say(f"wrote {args.output}: {args.precision} masked-pass graph of {args.model}; use it with "
          f"`explain --scoring-model {args.output}` (check its maps against float32 on your photos)")


def zoo_names() -> list[str]:
    """The models `export --zoo` builds: those the export package registers."""
    return sorted({entry.name for entry in entry_points(group=ZOO_GROUP)})


def zoo_name(text: str) -> str:
    names = zoo_names()
    if not names:
        raise argparse.ArgumentTypeError("the zoo comes with the export package: pip install 'onnx_sise[export]'")
    if text not in names:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(names)})")
    return text


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


def printable(text: str) -> str:
    """`text` with every control or otherwise unprintable character escaped (\\x1b,
    \\n, \\u202e; a byte that is not UTF-8 in a file name as \\xff), so that a label or
    a file name can neither draw on the terminal nor fake a line."""
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def say(text: str) -> None:
    """Print one line of results on stdout, escaped, now (a closed pipe or a full disk
    shows at this line, while the files already written are whole)."""
    try:
        print(printable(text), flush=True)
    except BrokenPipeError:
        _silence_stdout()
        raise BrokenPipe("stdout was closed by its reader (broken pipe): stopped; the files written so far "
                         "are complete") from None
    except OSError as exc:
        _silence_stdout()
        raise StdoutError(f"cannot write to stdout: {exc.strerror}: the files written so far are complete; "
                          "redirect stdout elsewhere") from None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the exit's own flush of stdout fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def complain(message: str) -> None:
    """The one stderr line of a failed run (nothing when stderr is closed)."""
    if sys.stderr is None:
        return
    try:
        print(f"onnx_sise: error: {printable(message)}", file=sys.stderr, flush=True)
    except OSError:
        pass


def standard_streams_closed() -> set[int]:
    """Which of fds 0, 1, 2 are closed; each is reopened on /dev/null, so that no file this
    run opens gets the number (and what a library prints to it). Python itself saw a
    stream closed at its start when sys.stdout or sys.stderr is None."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    return closed


@contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP raise Stopped (the first one only:
    later ones are ignored, so that they cannot cut the cleanup short). When it ends the
    signals are ignored: the work is over, the exit is near. A signal ignored when the
    run started (nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Stopped(signum)

    taken = [number for number in STOP_SIGNALS if signal.getsignal(number) is not signal.SIG_IGN]
    for number in taken:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number in taken:
            signal.signal(number, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    """The program: exit code 0, or 2 with one stderr line for bad input, 128 + the signal
    for a run stopped by SIGINT/SIGTERM/SIGHUP, 141 when the reader of stdout left.
    It takes SIGINT, SIGTERM and SIGHUP over for the rest of the process."""
    closed = standard_streams_closed() | ({1} if sys.stdout is None else set())
    try:
        with signals_stop_the_run():
            try:
                run_command(argv, stdout_closed=1 in closed)
                return 0
            except SiseError as exc:
                failure = exc
            except MemoryError:
                failure = SiseError("out of memory: explain a smaller photo, or use a smaller --batch-size or fewer "
                                    "masks")
            except OSError as exc:  # a path the checks above did not foresee (too long, a vanished directory)
                where = f" ({exc.filename})" if exc.filename else ""
                failure = SiseError(f"{exc.strerror or exc}{where}")
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        complain(f"stopped by {signal.Signals(signum).name}: the files written so far are complete, no partial "
                 "file was left")
        return EXIT_SIGNAL_BASE + signum
    complain(str(failure))  # signals are ignored by now: this line is the only one
    return EXIT_BROKEN_PIPE if isinstance(failure, BrokenPipe) else EXIT_BAD_INPUT


def run_command(argv: Sequence[str] | None, stdout_closed: bool) -> None:
    args = build_parser().parse_args(argv)
    if stdout_closed:
        raise StdoutError("stdout is closed: redirect it to a file, or to /dev/null to discard what onnx_sise "
                          "prints")
    {"explain": run_explain, "evaluate": run_evaluate, "export": run_export,
     "variant": run_variant}[args.command](args)
