"""Preparing an explainable ONNX from any plain ONNX classifier with onnx, onnxruntime
and NumPy alone (docs/design.md section 4): the classifier's own graph scores masked batches
(any batch); its batch-1 copy with the block outputs and their gradients (written by
differentiate.py) sits behind one switch, SIGCAM's mask-gradient graph behind another;
every preparation is checked (check.py) and the measured errors go into the metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from onnx_sise.errors import ExportError
from onnx_sise.files.writing import write_atomically
from onnx_sise.model.info import METADATA_KEY, OUTPUT_KINDS, GraphNames, InputSpec, ModelInfo, StagedGradient, Tap

from . import compose
from .check import verify
from .differentiate import GradientGraph, differentiate
from .emitter import Emitter
from .options import CHECKS
from .plain_model import InputOverrides, describe_input, image_input, output_kind_of, read_model
from .staging import staged_graph
from .static_graph import NONDETERMINISTIC, SHAPE_READERS, StaticGraph, inlined, lifted, live_nodes, normalise, reads
from .subgraphs import attach_graph, rename_everywhere, scoring_model, set_metadata
from .taps import FoundTap, find_taps

log = logging.getLogger("onnx_sise.prepare")
MASK_SIZE = 28
MASK_BATCH = 20
DEFAULT_OVERRIDES = InputOverrides()


def image_shape(spec: InputSpec, batch: int = 1) -> tuple[int, ...]:
    return (batch, 3, spec.height, spec.width) if spec.layout == "NCHW" else (batch, spec.height, spec.width, 3)


def example_image(spec: InputSpec, seed: int = 0) -> np.ndarray:
    """A preprocessed random photo (uniform pixels), the probe and check input."""
    pixels = np.random.default_rng(seed).uniform(0, 255, (spec.height, spec.width, 3))
    x = (pixels * spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    x = x.transpose(2, 0, 1) if spec.layout == "NCHW" else x
    return x[None].astype(np.float32)


def prepare_onnx(path: str | os.PathLike[str], out: str | os.PathLike[str],
                 overrides: InputOverrides = DEFAULT_OVERRIDES, taps: Sequence[str] = (), *,
                 labels: Sequence[str] = (), check: str = "auto") -> ModelInfo:
    """Write an explainable ONNX for the plain ONNX classifier at `path`."""
    path = Path(path)
    return prepare_model(read_model(path), out, model_name=path.stem, overrides=overrides, taps=taps, labels=labels,
                         check=check)


def prepare_model(model: onnx.ModelProto, out: str | os.PathLike[str], *, model_name: str,
                  overrides: InputOverrides = DEFAULT_OVERRIDES, taps: Sequence[str] = (), labels: Sequence[str] = (),
                  check: str = "auto") -> ModelInfo:
    """Write an explainable ONNX for `model` at `out` and return its metadata (see
    `explainable_model`)."""
    try:
        joined, info = explainable_model(model, model_name=model_name, overrides=overrides, taps=taps, labels=labels,
                                         check=check)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the model fails in onnxruntime while it is prepared ({message}): check --input-size "
                          "and --layout against the model's input") from None
    write_atomically(Path(out), joined.SerializeToString())
    return info


def explainable_model(model: onnx.ModelProto, *, model_name: str, overrides: InputOverrides = DEFAULT_OVERRIDES,
                      taps: Sequence[str] = (), labels: Sequence[str] = (),
                      check: str = "auto") -> tuple[onnx.ModelProto, ModelInfo]:
    """The explainable ONNX for `model`, its metadata set, and that metadata.

    `taps` names the tensors to explain (default: one per block, taps.py); `check` is one
    of CHECKS ("auto": float64 central differences where affordable, else float32), or
    "none" where the caller checks the gradients itself (the zoo: against torch autograd)."""
    if check not in (*CHECKS, "none"):
        raise ExportError(f"check {check!r} is not one of {', '.join(CHECKS)}")
    model = lifted(inlined(_copy(model)))
    value = image_input(model)
    spec = describe_input(value, overrides)
    kind = overrides.output_kind or output_kind_of(model)
    if kind not in OUTPUT_KINDS:
        raise ExportError(f"output kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    example = example_image(spec)
    plain = normalise(model, {value.name: example})
    logits = np.asarray(plain.values[plain.outputs[0]])
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ExportError(f"the model's first output has shape {list(logits.shape)}: expected class scores "
                          "(batch, classes); detection and segmentation models cannot be explained")
    num_classes = int(logits.shape[1])
    if labels and len(labels) != num_classes:
        raise ExportError(f"{len(labels)} labels for a model with {num_classes} classes")
    found = _named_taps(plain, taps) if taps else find_taps(plain, value.name)
    names, staged = GraphNames(), StagedGradient()
    info_taps = _describe(found, plain, spec)
    log.info("taps: %s", ", ".join(f"{t.source} {t.channels}@{t.height}x{t.width}" for t in info_taps))

    gradient = gradient_graph(model, value.name, kind, example, num_classes, found)
    shape = image_shape(spec)
    joined = attach_graph(scoring_graph(model, plain, value.name, kind, shape, names), gradient.model, "gradient", [
        (names.image, shape), (names.target_weights, (1, num_classes)), (names.logit_weights, (1, num_classes)),
        (staged.by_rank, ()), (staged.from_tap, ()),
    ], [names.logits, names.scores, *[t.activation_output for t in info_taps],
        *[t.gradient_output for t in info_taps]], names.gradient_switch,
        branch_weights={w for n in gradient.forward.nodes if n.op_type == "Conv" for w in n.input[1:]})
    mask = mask_gradient_graph(model, value.name, kind, spec, example, num_classes)
    if mask is not None:
        joined = attach_graph(joined, mask, "mask", [
            (names.mask_image, shape), (names.mask_baseline, shape), (names.masks, (MASK_BATCH, 1, MASK_SIZE, MASK_SIZE)),
            (names.mask_noise, shape), (names.mask_target_weights, (1, num_classes))],
            [names.mask_scores, names.mask_gradients], names.mask_switch)
    info = ModelInfo(model_name=model_name, input=spec, output_kind=kind, num_classes=num_classes,
                     taps=tuple(info_taps), labels=tuple(labels), staged_gradient=staged)
    report = verify(joined, model, value.name, info, gradient, [t.tensor for t in found], example, check)
    info = replace(info, verification=report)
    set_metadata(joined, METADATA_KEY, info.to_json())
    return joined, info


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _named_taps(graph: StaticGraph, names: Sequence[str]) -> list[FoundTap]:
    missing = [n for n in names if n not in graph.shapes]
    if missing:
        raise ExportError(f"--taps names tensors the graph does not have: {', '.join(missing)[:300]}")
    flat = [n for n in names if len(graph.shapes[n]) != 4]
    if flat:
        raise ExportError(f"--taps names tensors that are not 4-D feature maps: {', '.join(flat)[:300]}")
    fixed = [n for n in names if n in graph.constants or n in graph.inputs]
    if fixed:
        raise ExportError(f"--taps names weights or inputs, not feature maps computed from the image: "
                          f"{', '.join(fixed)[:300]}")
    if len(set(names)) != len(names):
        raise ExportError("--taps names a tensor twice")
    return [FoundTap(n) for n in names]


def _describe(found: Sequence[FoundTap], graph: StaticGraph, spec: InputSpec) -> list[Tap]:
    taps = []
    for i, tap in enumerate(found):
        _, c, h, w = tap.nchw_shape(graph)
        name = f"block{i}"
        taps.append(Tap(name=name, source=tap.tensor[:200], channels=int(c), height=int(h), width=int(w),
                        reduction=max(1, round(spec.width / int(w))), activation_output=f"activation/{name}",
                        gradient_output=f"gradient/{name}"))
    return taps


def gradient_graph(model: onnx.ModelProto, image_name: str, kind: str, example: np.ndarray, num_classes: int,
                   taps: Sequence[FoundTap]) -> GradientGraph:
    """The batch-1 sub-model: (image, target_weights, logit_weights) -> logits, scores,
    the taps (1, C, H, W) and the objective's gradient at each tap."""
    composed = compose.gradient_objective(model, image_name, kind, num_classes, [t.tensor for t in taps])
    zeros = np.zeros((1, num_classes), np.float32)
    forward = normalise(composed, {compose.IMAGE: example, compose.TARGET_WEIGHTS: zeros,
                                   compose.LOGIT_WEIGHTS: zeros, compose.BY_RANK: np.array(False)})
    emitter = Emitter(compose.PREFIX + "grad/")
    raw = differentiate(forward, compose.OBJECTIVE, [t.tensor for t in taps], emitter)
    activations, gradients, shapes, once = [], [], [], []
    for tap, grad in zip(taps, raw):
        nchw = tap.nchw_shape(forward)
        if tap.to_nchw == (0, 1, 2, 3):
            activation = emitter.op("Identity", [tap.tensor], "activation")
        else:
            activation = emitter.op("Transpose", [tap.tensor], "activation", perm=list(tap.to_nchw))
            grad = emitter.op("Transpose", [grad], "gradient", perm=list(tap.to_nchw))
        once.append(emitter.nodes[-1 if tap.to_nchw == (0, 1, 2, 3) else -2])
        activations.append(activation)
        gradients.append(grad)
        shapes.append(tuple(nchw[1:]))
    backward = [n for n in emitter.nodes if all(n is not a for a in once)]
    weights = [compose.RANKED_TARGET_WEIGHTS, compose.RANKED_LOGIT_WEIGHTS]
    fast = {compose.IMAGE, compose.LOGITS, compose.SCORES, *weights, *(t.tensor for t in taps)}
    staged = staged_graph(forward.nodes, fast, backward, gradients, shapes, weights, compose.FROM_TAP,
                          compose.PREFIX + "stage/")
    sub = forward.to_model([compose.LOGITS, compose.SCORES, *activations, *staged.gradients],
                           [*once, *staged.nodes], emitter.constants,
                           {**{a: (1, *s) for a, s in zip(activations, shapes)},
                            **{g: (1, *s) for g, s in zip(staged.gradients, shapes)}})
    sub.graph.input.append(helper.make_tensor_value_info(compose.FROM_TAP, onnx.TensorProto.INT64, []))
    for value in [*sub.graph.input, *sub.graph.output]:
        if value.name in (*staged.gradients, compose.TARGET_WEIGHTS, compose.LOGIT_WEIGHTS):
            value.type.tensor_type.shape.dim[0].dim_param = "rows"
    _keep_input_order(sub, [compose.IMAGE, compose.TARGET_WEIGHTS, compose.LOGIT_WEIGHTS, compose.BY_RANK,
                            compose.FROM_TAP])
    return GradientGraph(forward, sub, raw, emitter)


def mask_gradient_graph(model: onnx.ModelProto, image_name: str, kind: str, spec: InputSpec,
                        example: np.ndarray, num_classes: int) -> onnx.ModelProto | None:
    """SIGCAM's sub-model: (image, baseline, masks, noise, target_weights) -> scores (B,)
    and d scores / d masks (B, 1, m, m); None (SIGCAM unavailable) where the classifier
    cannot run a batch of MASK_BATCH."""
    composed = compose.mask_objective(model, image_name, kind, spec.layout, spec.height, spec.width, MASK_SIZE)
    masks = np.random.default_rng(1).uniform(size=(MASK_BATCH, 1, MASK_SIZE, MASK_SIZE)).astype(np.float32)
    try:
        forward = normalise(composed, {
            compose.MASK_IMAGE: example, compose.MASK_BASELINE: example * 0.1, compose.MASKS: masks,
            compose.MASK_NOISE: np.zeros(image_shape(spec, MASK_BATCH), np.float32),
            compose.TARGET_WEIGHTS: np.zeros((1, num_classes), np.float32)})
    except ExportError as exc:
        log.warning("no mask-gradient graph (SIGCAM will refuse this model): %s", exc)
        return None
    emitter = Emitter(compose.PREFIX + "maskgrad/")
    (grad,) = differentiate(forward, compose.OBJECTIVE, [compose.MASKS], emitter)
    sub = forward.to_model([compose.MASK_SCORES, grad], emitter.nodes, emitter.constants, {grad: masks.shape})
    _keep_input_order(sub, [compose.MASK_IMAGE, compose.MASK_BASELINE, compose.MASKS, compose.MASK_NOISE,
                            compose.TARGET_WEIGHTS])
    return sub


def _keep_input_order(model: onnx.ModelProto, order: Sequence[str]) -> None:
    by_name = {i.name: i for i in model.graph.input}
    inputs = [by_name[n] for n in order]
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def scoring_graph(model: onnx.ModelProto, plain: StaticGraph, image_name: str, kind: str, shape: tuple[int, ...],
                  names: GraphNames) -> onnx.ModelProto:
    """The classifier with its pure constants folded and Psi appended, for masked
    batches of any size (a graph fixed at batch 1 has its batch-1 Reshapes opened)."""
    constants = {t.name for t in model.graph.initializer}
    nodes, folded = [], []
    for node in model.graph.node:
        pure = node.op_type not in SHAPE_READERS + NONDETERMINISTIC and all(i in constants for i in reads(node))
        if pure and all(o in plain.values for o in node.output if o):
            for o in node.output:
                if o:
                    folded.append(numpy_helper.from_array(np.asarray(plain.values[o]), o))
                    constants.add(o)
        else:
            nodes.append(node)
    scores = compose.PREFIX + "batch_scores"
    nodes.append(compose.score_head(kind, model.graph.output[0].name, scores))
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in list(model.graph.initializer) + folded if t.name in used]
    image = next(i for i in model.graph.input if i.name == image_name)
    dims = [d.dim_value if d.dim_value > 0 else None for d in image.type.tensor_type.shape.dim]
    dims[0] = "batch"
    graph = helper.make_graph(live_nodes(nodes, [scores]), "scoring",
                              [helper.make_tensor_value_info(image_name, onnx.TensorProto.FLOAT, [dims[0], *shape[1:]])],
                              [helper.make_tensor_value_info(scores, onnx.TensorProto.FLOAT, ["batch", None])],
                              initializers)
    rename_everywhere(graph, {n: f"scoring/{n}" for n in [*(o for nd in graph.node for o in nd.output if o),
                                                            *(t.name for t in graph.initializer)]})
    scoring = helper.make_model(graph, opset_imports=list(model.opset_import))
    scoring.ir_version = max(model.ir_version, 8)
    if not _runs_batched(scoring, shape):
        scoring = _opened_reshapes(scoring)
        if not _runs_batched(scoring, shape):
            raise ExportError("the model runs only at batch 1 (its graph fixes the batch size): export it with a "
                              "dynamic batch dimension")
    return scoring_model(scoring, shape, names)


def _runs_batched(scoring: onnx.ModelProto, shape: tuple[int, ...]) -> bool:
    """Batch 3 gives what three batch-1 runs give."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    batch = np.random.default_rng(2).normal(size=(3, *shape[1:])).astype(np.float32)
    try:
        session = ort.InferenceSession(scoring.SerializeToString(), options, providers=["CPUExecutionProvider"])
        together = session.run(None, {scoring.graph.input[0].name: batch})[0]
        alone = np.concatenate([session.run(None, {scoring.graph.input[0].name: b[None]})[0] for b in batch])
    except Exception:  # onnxruntime's own error types: the graph fixes the batch
        return False
    if not np.isfinite(alone).all():
        raise ExportError("the model returns NaN or infinite scores on random inputs: check its weights")
    return together.shape == alone.shape and np.allclose(together, alone, rtol=1e-4, atol=1e-6)


def _opened_reshapes(scoring: onnx.ModelProto) -> onnx.ModelProto:
    """Constant Reshape targets that fix the batch at 1 get -1 there instead."""
    opened = onnx.ModelProto()
    opened.CopyFrom(scoring)
    inits = {t.name: t for t in opened.graph.initializer}
    for node in opened.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        if target.ndim == 1 and target.size and target[0] == 1 and -1 not in target[1:]:
            fixed = target.copy()
            fixed[0] = -1
            name = node.input[1] + "/batch"
            opened.graph.initializer.append(numpy_helper.from_array(fixed, name))
            node.input[1] = name
    return opened
