"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018), section 3.1: the cascading model parameter randomisation test.

The weights of the explainable ONNX are destroyed layer by layer from the output side
(top layer first) and each method's maps on the damaged model are compared with its maps
on the trained one. A method whose maps barely change is not explaining the model.

Layers (`parameterised_layers`): every Conv, ConvTranspose, Gemm and MatMul of the
scoring graph (the classifier itself) with a weight initializer, in forward topological
order, each with the initializers it owns: weight and bias, the bias of an Add that
directly follows a MatMul, and the learned scale and shift of a BatchNormalization that
directly follows the layer. (The zoo's torch export folds BatchNorm into the Conv: its
weight and bias are then the folded ones.)

Re-initialisation (`randomised_model`), for cascade depth k: every float initializer T of
the top k layers is re-drawn i.i.d. from N(0, std(T)^2), std over T's own entries (a
tensor whose entries are all equal, std 0, is left as it is), with a generator seeded by
(seed, layer index), so depth k + 1 re-draws exactly the tensors of depth k the same way
plus one layer more: a true cascade. BatchNorm's running mean and variance are kept as
they are (Adebayo re-initialise the learned weights; the statistics are not learned by
gradient descent). The gradient sub-graph keeps its own copy of the convolution weights
(docs/design.md section 3) and shares the others with the scoring graph by content, so
every initializer anywhere in the file (sub-graphs included) whose value equals a
re-drawn tensor's value gets the same new value: forward and backward change together.
`check_copies` confirms it on every damaged model: the gradient branch's scores must equal
the scoring graph's.

Similarity (on maps at the model's input size, the explainer's output resized back with
INTER_AREA as `evaluate` does):
  spearman       Spearman's rank correlation of the two maps (ties get their average rank,
                 as scipy.stats.spearmanr); NaN when either map is constant
  spearman_abs   the same of |maps| (Adebayo's "absolute value" rank correlation); equal
                 to spearman here, every map leaving the Explainer being in [0, 1]
  ssim           SSIM (Wang et al. 2004, eq. 13 averaged over the image) of the maps each
                 min-max normalised to [0, 1]: Gaussian window 11 x 11, sigma 1.5,
                 K1 = 0.01, K2 = 0.03, data range 1, population (co)variances, the filter's
                 border reflected and 5 pixels cropped on each side before the mean
                 (skimage.metrics.structural_similarity with gaussian_weights=True)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError, OptionError
from ..explainer import Explainer
from ..images.decode import read_rgb
from ..methods import METHODS
from ..model.external_data import external_data_files, inlined_external_data, read_external_data
from ..model.files import read_model_file
from ..model.session import ExplainableModel, run
from .annotations import Annotation, AnnotationError, short
from .evaluate import list_of

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
# Cascade depths (layers re-drawn from the top) when none are given: the classifier, then
# one layer more, then more layers at a time, then every layer.
DEFAULT_DEPTHS = "1,2,4,8,all"
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
# The gradient branch's scores against the scoring graph's on a damaged model (float32).
COPY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Layer:
    """One parameterised layer of the scoring graph: its node, op and owned initializers."""

    node: str
    op_type: str
    initializers: tuple[str, ...]

    @property
    def label(self) -> str:
        """A short name: the first initializer's, without the scoring graph's prefix and a
        trailing ".weight"."""
        name = self.initializers[0].removeprefix("scoring/")
        return name.removesuffix(".weight")


def parameterised_layers(model: onnx.ModelProto) -> list[Layer]:
    """The Conv / ConvTranspose / Gemm / MatMul nodes of the main graph that read a float
    initializer, in the graph's (topological, input side first) order, each with the
    initializers it owns (see the module docstring); a tensor two layers read belongs to
    the first."""
    graph = model.graph
    inputs = {value.name for value in graph.input}  # an input's default is not a weight
    floats = {t.name for t in graph.initializer if t.data_type in FLOAT_TYPES and t.name not in inputs}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers, owned = [], set()
    for node in graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        params = [name for name in node.input if name in floats]
        if not params:
            continue
        following = consumers.get(node.output[0], []) if node.output else []
        if len(following) == 1:
            after = following[0]
            if after.op_type == "BatchNormalization":
                params += [name for name in after.input[1:3] if name in floats]
            elif node.op_type == "MatMul" and after.op_type == "Add":
                params += [name for name in after.input if name in floats]
        mine = tuple(dict.fromkeys(name for name in params if name not in owned))
        if mine:
            owned.update(mine)
            layers.append(Layer(node.name, node.op_type, mine))
    return layers


def cascade(layers: Sequence[Layer], depth: int) -> list[Layer]:
    """The top `depth` layers, output side first (Adebayo's cascade order)."""
    return list(reversed(layers))[:depth]


def _subgraph_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """The initializers of every sub-graph (If branches, loop bodies), at any depth."""
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from sub.initializer
                yield from _subgraph_initializers(sub)


def _key(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    return str(array.dtype), array.shape, np.ascontiguousarray(array).tobytes()


def _tail(name: str) -> str:
    """A sub-graph copy's name without its prefix (gradient/t/x -> x); a main graph name without scoring/."""
    return name.rpartition("/t/")[2] if "/t/" in name else name.removeprefix("scoring/")


def randomised_model(model: onnx.ModelProto, layers: Sequence[Layer], depth: int, seed: int = 0) -> onnx.ModelProto:
    """A copy of `model` whose top `depth` layers (output side first) are re-drawn, each
    float tensor T from N(0, std(T)^2) seeded by (seed, layer index); every copy of a
    re-drawn tensor in the sub-graphs (equal value; by name where values repeat) gets the
    same new value. depth 0 gives an unchanged copy."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or not 0 <= depth <= len(layers):
        raise OptionError(f"cascade depth must be an integer in [0, {len(layers)}], got {depth!r}")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    main = {t.name: t for t in copy.graph.initializer}
    by_value: dict[tuple, list[str]] = {}
    for tensor in copy.graph.initializer:
        by_value.setdefault(_key(numpy_helper.to_array(tensor)), []).append(tensor.name)
    index_of = {layer.node: i for i, layer in enumerate(layers)}
    new_values: dict[str, tuple[tuple, np.ndarray]] = {}
    for layer in cascade(layers, depth):
        rng = np.random.default_rng([int(seed), index_of[layer.node]])
        for name in layer.initializers:
            old = numpy_helper.to_array(main[name])
            std = float(np.std(old, dtype=np.float64))
            if std == 0.0 or not math.isfinite(std):
                continue
            new = rng.normal(0.0, std, size=old.shape).astype(old.dtype)
            new_values[name] = (_key(old), new)
            main[name].CopyFrom(numpy_helper.from_array(new, name=name))
    owners: dict[tuple, list[str]] = {}
    for name, (key, _) in new_values.items():
        owners.setdefault(key, []).append(name)
    for tensor in _subgraph_initializers(copy.graph):
        key = _key(numpy_helper.to_array(tensor))
        if key not in owners:
            continue
        holders = by_value[key]
        owner = owners[key][0] if len(holders) == 1 else next(
            (name for name in owners[key] if _tail(name) == _tail(tensor.name)), None)
        if owner is None:
            if all(_tail(name) != _tail(tensor.name) for name in holders):
                raise ModelError(f"the sub-graph weight {tensor.name} equals several weights of the scoring graph "
                                 "and is named after none of them: cannot tell which layer it copies")
            continue  # a copy of a tensor of the same value that is not re-drawn
        tensor.CopyFrom(numpy_helper.from_array(new_values[owner][1], name=tensor.name))
    return copy


def check_copies(model: ExplainableModel, x: np.ndarray) -> float:
    """The largest difference between the gradient branch's scores and the scoring
    graph's on input `x`; a damaged model whose branch kept a weight the scoring graph lost
    (a copy that was not re-drawn) is refused (ModelError)."""
    names = model.info.graph
    feeds = {names.image: x[None], names.target_weights: np.zeros((1, model.info.num_classes), np.float32)}
    switches = [*model.session.get_inputs(), *model.session.get_overridable_initializers()]
    if names.gradient_switch in {i.name for i in switches}:
        feeds[names.gradient_switch] = np.array(True)
    (branch,) = run(model.session, [names.scores], feeds, model.source)
    difference = float(np.max(np.abs(branch.reshape(-1) - model.scores(x))))
    if not difference <= COPY_TOLERANCE:
        raise ModelError(f"{model.source}: after re-drawing the weights the gradient graph scores differ from the "
                         f"scoring graph by {difference:.2g}: a weight copy was missed")
    return difference


def ranks(values: np.ndarray) -> np.ndarray:
    """The ranks 1..n of `values` (flattened), tied values getting their average rank."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], flat.size]
    average = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    result = np.empty(flat.size)
    result[order] = np.repeat(average, ends - starts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of one shape: Pearson's correlation of
    their average ranks; NaN when either is constant (as scipy.stats.spearmanr)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"maps of shapes {np.shape(a)} and {np.shape(b)}")
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def _unit(a: np.ndarray) -> np.ndarray:
    """Min-max normalised to [0, 1] in float64; a constant map becomes zeros."""
    a = np.asarray(a, dtype=np.float64)
    low, high = float(a.min()), float(a.max())
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004, eq. 13 with C1 = (K1 L)^2, C2 = (K2 L)^2, L = 1) of two
    maps of one shape, each min-max normalised to [0, 1] first; local statistics under an
    11 x 11 Gaussian window (sigma 1.5, borders reflected), 5 pixels cropped at the edges."""
    if np.shape(a) != np.shape(b) or np.ndim(a) != 2:
        raise ValueError(f"two maps (H, W) of one shape needed, got {np.shape(a)} and {np.shape(b)}")
    x, y = _unit(a), _unit(b)
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)

    def mean(image: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    inner = index[pad:index.shape[0] - pad, pad:index.shape[1] - pad]
    if inner.size == 0:
        raise ValueError(f"maps of {np.shape(a)} are smaller than the {SSIM_WINDOW} x {SSIM_WINDOW} window")
    return float(inner.mean())


def parse_depths(text: str, layers: int) -> list[int]:
    """Cascade depths from "1,2,4,all" (layers re-drawn from the top; "all" = every
    layer), ascending and without repeats; OptionError for anything else."""
    depths = []
    for part in (p.strip() for p in str(text).split(",")):
        if part == "all":
            depths.append(layers)
            continue
        try:
            depth = int(part)
        except ValueError:
            raise OptionError(f"cascade depths must be layer counts or 'all', like {DEFAULT_DEPTHS}, got {part!r:.40}") from None
        if not 1 <= depth <= layers:
            raise OptionError(f"cascade depth {depth} is outside [1, {layers}]: this model has {layers} "
                              "parameterised layers")
        depths.append(depth)
    return sorted(set(depths))


def model_proto(explainer: Explainer) -> onnx.ModelProto:
    """The explainable ONNX `explainer` runs, parsed (external data inlined)."""
    path = explainer.prepared.path if explainer.prepared is not None else explainer.model.path
    if path is None:
        raise OptionError("the sanity check re-reads the model: give the explainer a path, not bytes")
    data = read_model_file(path, str(path))
    files = external_data_files(data, path, str(path))
    if files:
        data = inlined_external_data(data, read_external_data(files, str(path)), str(path))
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, or a model over 2 GiB
        raise ModelError(f"{path} cannot be parsed for the sanity check ({str(exc)[:120]})") from None


def sanity(explainer: Explainer, annotations: Sequence[Annotation], methods: Sequence[str],
           depths: Sequence[int], weights_seed: int = 0, on_image: Callable[[str], None] = lambda s: None,
           **options: object) -> dict[str, object]:
    """The cascading randomisation test: each method's map of each image's annotated class
    on the trained model and on the model with its top `depths` layers re-drawn
    (randomised_model, seeded by `weights_seed`), compared; `options` go to the methods.

    Returns {"layers": [...], "depths": [{"depth", "layers", "label"}], "methods": {method:
    {depth: {"spearman", "spearman_abs", "ssim" (means over the images), "images": [...]}}}}
    with depth as a string key (JSON); per image also the damaged model's score of the class."""
    if not isinstance(explainer, Explainer):
        raise OptionError(f"explainer must be an onnx_sise.Explainer, got {type(explainer).__name__}")
    if not list_of(annotations, Annotation) or not annotations:
        raise OptionError("annotations must be a non-empty list of Annotation (see load_annotations)")
    if not list_of(methods, str) or not methods or not set(methods) <= set(METHODS):
        raise OptionError(f"methods must be a non-empty list of names from {', '.join(METHODS)}, got {short(methods)}")
    if not callable(on_image):
        raise OptionError(f"on_image must be callable, got {type(on_image).__name__}")
    if isinstance(weights_seed, bool) or not isinstance(weights_seed, numbers.Integral) or weights_seed < 0:
        raise OptionError(f"weights_seed must be an integer >= 0, got {weights_seed!r}")
    proto = model_proto(explainer)
    layers = parameterised_layers(proto)
    if not layers:
        raise ModelError(f"{explainer.model.source} has no Conv, Gemm or MatMul layer with weights to re-draw")
    if (not isinstance(depths, (list, tuple)) or not depths
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and 1 <= d <= len(layers)
                       for d in depths)):
        raise OptionError(f"depths must be a non-empty list of layer counts in [1, {len(layers)}], got {depths!r:.80}")
    spec = explainer.info.input
    images = [_checked_rgb(item) for item in annotations]

    def maps(model: Explainer, depth: int) -> list[tuple[str, int, np.ndarray, float]]:
        found = []
        for method in methods:
            for item, rgb in zip(annotations, images):
                on_image(f"depth {depth} {method} {item.file.name}")
                result = model.explain(rgb, target=item.target, method=method, **options)
                small = cv2.resize(result.saliency, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
                found.append((method, item.target, small, result.score))
        return found

    trained = maps(explainer, 0)
    report: dict[str, dict[str, object]] = {m: {} for m in methods}
    described = []
    for depth in sorted(set(int(d) for d in depths)):
        chosen = cascade(layers, depth)
        damaged = Explainer(randomised_model(proto, layers, depth, int(weights_seed)).SerializeToString(),
                            threads=_threads(explainer), batch_size=explainer.batch_size, prepare=False)
        difference = check_copies(damaged.model, explainer.preprocess(images[0])[0])
        described.append({"depth": depth, "label": f"top {depth}" + (" (all)" if depth == len(layers) else ""),
                          "deepest": chosen[-1].label, "branch_score_difference": difference})
        rows: dict[str, list[dict[str, object]]] = {m: [] for m in methods}
        for (method, target, before, _), (_, _, after, score) in zip(trained, maps(damaged, depth)):
            rows[method].append({"file": None, "target": target, "score": score,
                                 "spearman": _finite(spearman(before, after)),
                                 "spearman_abs": _finite(spearman(np.abs(before), np.abs(after))),
                                 "ssim": ssim(before, after)})
        for method in methods:
            for row, item in zip(rows[method], annotations):
                row["file"] = item.file.name
            report[method][str(depth)] = {
                **{name: _mean([r[name] for r in rows[method]]) for name in ("spearman", "spearman_abs", "ssim")},
                "images": rows[method]}
        del damaged
    return {"layers": [{"node": layer.node, "op": layer.op_type, "initializers": list(layer.initializers)}
                       for layer in layers],
            "weights_seed": int(weights_seed), "depths": described, "methods": report}


def _checked_rgb(item: Annotation) -> np.ndarray:
    rgb = read_rgb(item.file)
    if rgb.shape[:2] != item.size:
        raise AnnotationError(f"{item.file} changed since the annotations were checked: run again")
    return rgb


def _threads(explainer: Explainer) -> int | None:
    threads = explainer.model.options.intra_op_num_threads
    return threads or None


def _finite(value: float) -> float | None:
    """None for NaN (a constant map's Spearman), which JSON cannot hold."""
    return value if math.isfinite(value) else None


def _mean(values: list) -> float | None:
    """The mean of the values that are not None, None if none is."""
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None
