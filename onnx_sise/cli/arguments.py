"""The command line's commands and flags. The methods, their options and the metrics come
from their registries, the zoo from the export package's entry points."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import SiseError
from ..model.info import OUTPUT_KINDS
from ..model.preparation.options import CHECKS
from .terminal import printable

ZOO_GROUP = "onnx_sise.zoo"  # entry points of the export package: one per model `export --zoo` builds


class UsageError(SiseError):
    """The command line does not parse (an unknown option, a missing argument ...)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing a usage block and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{printable(message)} (see {self.prog} --help)")  # it may quote an argument


def build_parser() -> argparse.ArgumentParser:
    """The commands and their flags; the methods, their options and the metrics come from
    their registries (methods/registry.py, evaluation/registry.py)."""
    from ..evaluation import METRICS
    from ..evaluation.sanity import DEFAULT_DEPTHS
    from ..methods import METHODS

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
    add_provider_options(explain)
    explain.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    explain.add_argument("--max-seconds", type=float, default=None,
                         help="stop an image's explanation after this many seconds, exit code 2 (default: no limit)")
    explain.add_argument("--json", action="store_true", help="print one JSON object per image (default: off)")
    explain.add_argument("--compare", type=names_of(tuple(METHODS)), default=None, metavar="METHODS",
                         help="comma-separated methods explained side by side instead of --method: writes "
                              "<stem>.compare.png (the photo and each method's overlay) and <stem>.compare.npy "
                              "(the maps, one per method, in that order) (default: off)")
    explain.add_argument("--legend", action="store_true",
                         help="draw a colour bar of the map's scale beside each overlay and a caption (method, "
                              "class, score) above it (default: off)")
    explain.add_argument("--scoring-model", type=Path, default=None,
                         help="fp16 or int8 copy of the masked-pass graph, written by the variant command "
                              "(default: the model's own float32 graph)")
    explain.add_argument("--cache-dir", type=Path, default=None,
                         help="where plain ONNX models are prepared once (default: $ONNX_SISE_CACHE or ~/.cache/onnx_sise)")
    add_resize_option(explain)
    add_method_options(explain)

    evaluate = commands.add_parser("evaluate", help="methods x metrics over annotated images",
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   description=evaluate_doc())
    add_annotated_run(evaluate)
    evaluate.add_argument("--metrics", type=names_of(tuple(METRICS)), default=list(METRICS),
                          help=f"comma-separated, from {','.join(METRICS)} (default: all)")
    evaluate.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default: 100)")
    add_stability_option(evaluate)
    evaluate.add_argument("--address", default=None,
                          help="explain and measure the images on Ray (onnx_sise[ray]): local (Ray started on this "
                               "machine), auto, ray://host:10001 or host:6379; --threads is then per actor; the "
                               "images and annotations must be on a filesystem every node mounts (default: no Ray)")
    evaluate.add_argument("--actors", type=int, default=None,
                          help="with --address: explainers running at once (default: as many as the cluster's CPUs "
                               "hold)")
    add_run_settings(evaluate, "evaluation.json and evaluation.csv")

    sanity = commands.add_parser("sanity", help="cascading randomisation test of the methods (Adebayo et al. 2018)",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, description=sanity_doc())
    add_annotated_run(sanity)
    sanity.add_argument("--depths", default=DEFAULT_DEPTHS,
                        help="cascade depths: how many layers to re-draw from the output side, comma-separated "
                             f"counts or 'all' (default: {DEFAULT_DEPTHS})")
    sanity.add_argument("--weights-seed", type=int, default=0,
                        help="seed of the re-drawn weights; depth k+1 re-draws depth k's the same way (default: 0)")
    add_run_settings(sanity, "sanity.json and sanity.csv")

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

    batch = commands.add_parser("batch", help="explain every image of a folder or manifest on Ray (one machine, "
                                               "or a cluster with --address; needs onnx_sise[ray])")
    batch.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx), on a path every node sees")
    batch.add_argument("input", help="a folder (walked recursively), a .txt/.csv/.parquet manifest of paths; local "
                                     "or a URI pyarrow reads (s3://, gs://, ...)")
    batch.add_argument("--out", type=Path, required=True,
                       help="output folder: <relative path>.<method>.npy|png and manifest.<method>.parquet (required)")
    batch.add_argument("--method", choices=tuple(METHODS), default="sise", help="explanation method (default: sise)")
    batch.add_argument("--target", type=int, default=None, help="class id to explain (default: each image's top-1)")
    add_cluster_options(batch)
    batch.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                       help="onnxruntime provider of the actors: auto is cuda when the cluster has GPUs "
                            "(default: auto)")
    batch.add_argument("--batch-size", type=int, default=32, help="masked inputs per forward pass (default: 32)")
    batch.add_argument("--retry-errors", action="store_true",
                       help="explain again the images a previous run recorded as errors (default: off)")
    add_resize_option(batch)
    add_method_options(batch)

    variant = commands.add_parser("variant", help="write a copy of the masked-pass graph in another precision "
                                                   "(needs onnx)")
    variant.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx)")
    variant.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True,
                         help="fp32 (the graph alone, for CUDA graphs), fp16 for GPUs, int8 for CPUs with VNNI "
                              "(required)")
    variant.add_argument("--calibrate", type=Path, nargs="+", default=[],
                         help="int8: photos like the ones you will explain, each scored under 8 random coarse masks "
                              "to set the int8 ranges (default: none; int8 needs some)")
    variant.add_argument("--float-layers", type=int, default=None, metavar="N",
                         help="int8: keep the first N convolutions in float, the layers whose int8 breaks the map "
                              "(default: onnx_sise_export.DEFAULT_FLOAT_LAYERS; see benchmarks/bench_int8.py)")
    variant.add_argument("-o", "--output", type=Path, required=True, help="path of the variant to write")
    add_serve(commands)
    return parser


def add_serve(commands: argparse._SubParsersAction) -> None:
    """`serve`: a KServe model server (V1 :predict/:explain, V2, /explanations/NAME)."""
    serve = commands.add_parser("serve", help="serve predictions and explanations over HTTP as a KServe explainer "
                                              "(pip install onnx_sise[serve])")
    serve.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx), or a plain ONNX classifier")
    serve.add_argument("--name", default=None,
                       help="model name in the URLs, /v1/models/NAME:explain (default: the file name without "
                            ".sise.onnx / .onnx)")
    serve.add_argument("--http-port", type=int, default=8080, help="HTTP port (default: 8080)")
    serve.add_argument("--grpc-port", type=int, default=8081, help="gRPC port of the V2 protocol (default: 8081)")
    serve.add_argument("--no-grpc", action="store_true", help="serve HTTP only (default: off)")
    serve.add_argument("--slots", type=int, default=1,
                       help="explanations run at once, each in its own thread (default: 1)")
    serve.add_argument("--queue", type=int, default=8,
                       help="explain requests waiting for a slot; more are answered 503 (default: 8)")
    serve.add_argument("--retry-after", type=int, default=5,
                       help="seconds a 503 answer tells the client to wait (default: 5)")
    serve.add_argument("--max-body-bytes", type=int, default=32 << 20,
                       help="larger request bodies are answered 413 (default: 33554432)")
    serve.add_argument("--max-instances", type=int, default=16, help="photos in one request (default: 16)")
    serve.add_argument("--max-pixels", type=int, default=1 << 28,
                       help="larger photos are refused before decoding (default: 268435456)")
    serve.add_argument("--max-seconds", type=float, default=None,
                       help="stop any explanation after this many seconds, 504; a request's max_seconds may "
                            "ask for less (default: no limit)")
    serve.add_argument("--grace-seconds", type=int, default=30,
                       help="at SIGTERM, how long requests in flight may finish before they are cancelled "
                            "(default: 30)")
    serve.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    serve.add_argument("--batch-size", type=int, default=32, help="masked inputs per forward pass (default: 32)")


def add_annotated_run(parser: argparse.ArgumentParser) -> None:
    """The model, the annotated images and the methods: what evaluate and sanity run over."""
    from ..methods import METHODS

    parser.add_argument("model", type=Path, help="explainable ONNX (*.sise.onnx)")
    parser.add_argument("--images", type=Path, required=True, help="directory the annotation file's paths start from")
    parser.add_argument("--annotations", type=Path, required=True,
                        help="annotation file: JSON (format above), COCO JSON, a PASCAL VOC XML file or a folder of "
                             "them; VOC/COCO class names are the model's labels or class ids")
    parser.add_argument("--methods", type=names_of(tuple(METHODS)), default=["sise"],
                        help=f"comma-separated, from {','.join(METHODS)} (default: sise)")


def add_run_settings(parser: argparse.ArgumentParser, outputs: str) -> None:
    """Batch size, threads, the resize, the methods' options and the output directory of evaluate and sanity."""
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass (default: 32)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    add_resize_option(parser)
    add_method_options(parser)
    parser.add_argument("--out", type=Path, default=Path("."), help=f"directory for {outputs} (default: .)")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--address, --actors and --threads of the commands that run on Ray."""
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: auto, ray://host:10001 or host:6379 (default: start Ray on this "
                             "machine)")
    parser.add_argument("--actors", type=int, default=None,
                        help="explainers running at once (default: as many as the cluster's CPUs hold, or one per GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime threads per actor (default: a quarter of a node's CPUs, 1 to 4)")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """A flag per option of the registered methods (--sigcam-theta for sigcam_theta), with
    its type, choices, default and help from the option's Domain: the options' one home."""
    from ..methods import option_fields
    from ..methods.options import domain_of

    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in option_fields().values():
        domain = domain_of(option)
        group = groups.get(domain.group) or groups.setdefault(domain.group, parser.add_argument_group(domain.group))
        shown = "" if "default:" in domain.help else f" (default: {option.default})"
        kind = {"int": int, "real": float}.get(domain.kind, str)
        group.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name, type=kind, default=option.default,
                           choices=domain.choices or None, help=domain.help + shown)


def add_provider_options(parser: argparse.ArgumentParser) -> None:
    """--provider (model/session.py PROVIDER_CHOICES) and --precision (methods/options.py PRECISION)."""
    from ..methods.options import PRECISION
    from ..model.openvino import DEFAULT_PRECISION
    from ..model.session import PROVIDER_CHOICES

    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default=PROVIDER_CHOICES[0],
                        help="onnxruntime provider (cpu, cuda), or OpenVINO's CPU or GPU for the masked passes "
                             f"(openvino, openvino-gpu: pip install 'onnx_sise[openvino]') (default: {PROVIDER_CHOICES[0]})")
    parser.add_argument("--precision", choices=PRECISION.choices, default=DEFAULT_PRECISION,
                        help=f"{PRECISION.help} (default: {DEFAULT_PRECISION})")


def add_resize_option(parser: argparse.ArgumentParser) -> None:
    """--resize, from its Domain (methods/options.py RESIZE)."""
    from ..methods.options import DEFAULT_RESIZE, RESIZE

    parser.add_argument("--resize", choices=RESIZE.choices, default=DEFAULT_RESIZE,
                        help=f"{RESIZE.help} (default: {DEFAULT_RESIZE})")


def add_stability_option(parser: argparse.ArgumentParser) -> None:
    """evaluate --stability (evaluation/stability.py)."""
    parser.add_argument("--stability", action="store_true",
                        help="also measure each map's stability under harmless changes (resize method, JPEG at "
                             "quality 90, a 1-pixel shift): Pearson r, Spearman rho, max-sensitivity; writes "
                             "stability.json and stability.md (default: off)")


def evaluate_doc() -> str:
    from ..evaluation.annotations import __doc__ as doc

    return doc or ""


def sanity_doc() -> str:
    from ..evaluation.sanity import __doc__ as doc

    return f"{doc or ''}\nThe annotation file is evaluate's (see `evaluate --help`); boxes and masks are not needed."


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
    from ..methods import option_fields

    return {name: getattr(args, name) for name in option_fields()}


def chosen_method(args: argparse.Namespace) -> str:
    """--method, or ucag-<method> with --refine ucag."""
    if args.refine == "none":
        return args.method
    if args.method.startswith("ucag-"):
        raise SiseError(f"--method {args.method} is already refined by UCAG: drop --refine or pick the plain method")
    return f"ucag-{args.method}"


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
