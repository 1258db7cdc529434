"""Copies of the masked-pass (scoring) sub-graph of an explainable ONNX: fp32 (alone in
its session, as CUDA graphs need), fp16 for GPUs with tensor cores, int8 (static QDQ
quantisation, per-channel weights) for CPUs with fast int8 paths. A variant is a separate file; the gradient call
stays in float32 in the explainable ONNX, and `Explainer(..., scoring_model=variant)`
runs the masked passes through the variant. The int8 variant folds BatchNorm into the
convolutions first, quantises activations as uint8 and weights as int8 per channel (the
u8s8 form that onnxruntime runs with VNNI instructions on x86), and keeps the classifier
head (the last Gemm/MatMul and everything after it) in float32, and the first
`float_layers` convolutions too (the stem and first blocks: `layer_sensitivity` ranks
them the most sensitive on masked inputs, both their weights and their activations; see
benchmarks/bench_int8.py). The variant's metadata lists the nodes kept in float. Fidelity
is the user's to check on their photos (benchmarks/bench_int8.py reports map
correlations with float32 on the photo set)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx

from onnx_sise import kernels
from onnx_sise.errors import ExportError, ModelError
from onnx_sise.explainer import Explainer, ImageLike
from onnx_sise.files.writing import write_atomically
from onnx_sise.model.info import METADATA_KEY, ModelInfo
from onnx_sise.model.preparation.subgraphs import set_metadata
from onnx_sise.model.scoring import scoring_graph
from onnx_sise.model.session import VARIANT_KEY

PRECISIONS = ("fp32", "fp16", "int8")
# Leading convolutions int8 keeps in float (bench_int8.py: the stem and first blocks of
# Lite0 are the layers whose quantisation breaks the map; RESULTS.md "int8 that keeps the map").
DEFAULT_FLOAT_LAYERS = 12


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every constant sub-expression folded and nothing else rewritten."""
    import onnx_ir
    import onnxscript.optimizer

    graph = onnx_ir.serde.deserialize_model(model)
    onnxscript.optimizer.fold_constants(graph)
    onnxscript.optimizer.remove_unused_nodes(graph)
    return onnx_ir.serde.serialize_model(graph)


def _scoring_graph(sise_path: Path) -> tuple[onnx.ModelProto, ModelInfo]:
    """The top level of an explainable ONNX without its switched sub-graphs (the If
    nodes): the scoring graph, masked_batch in, batch_scores out."""
    model = onnx.load(str(sise_path))
    metadata = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in metadata:
        raise ModelError(f"{sise_path} is not an explainable ONNX: export it first")
    info = ModelInfo.from_json(metadata[METADATA_KEY])
    scoring = scoring_graph(model, info, str(sise_path))
    return fold_constants(scoring), info


def calibration_batches(explainer: Explainer, photos: Sequence[ImageLike], masks_per_photo: int = 8,
                        cells: int = 7, seed: int = 0) -> list[np.ndarray]:
    """int8 calibration batches that look like SISE's masked inputs: each photo,
    preprocessed, times `masks_per_photo` masks of uniform random `cells` x `cells` values
    upsampled bilinearly to the input size. One batch (masks_per_photo, *input shape) per photo."""
    rng = np.random.default_rng(seed)
    batches = []
    for photo in photos:
        x, _ = explainer.preprocess(photo)
        spec = explainer.info.input
        grid = rng.uniform(size=(masks_per_photo, cells, cells)).astype(np.float32)
        masks = kernels.upsample_bilinear(grid, spec.height, spec.width)
        batches.append(x[None] * (masks[:, None] if spec.layout == "NCHW" else masks[..., None]))
    return batches


def write_scoring_variant(sise_path: str | os.PathLike[str], out_path: str | os.PathLike[str], precision: str,
                          calibration: Iterable[np.ndarray] = (), float_layers: int = DEFAULT_FLOAT_LAYERS) -> Path:
    """Write the scoring sub-graph of `sise_path` in `precision` ("fp32", "fp16" or "int8") to
    `out_path`. int8 needs `calibration`: batches (B, C, H, W) of masked model inputs like
    those it will score (e.g. real photos times SISE masks), and keeps the first
    `float_layers` convolutions (and the head) in float32."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if isinstance(float_layers, bool) or not isinstance(float_layers, int) or not 0 <= float_layers <= 10_000:
        raise ExportError(f"float_layers must be a whole number of convolutions from 0, got {float_layers!r}")
    sise_path = Path(sise_path)
    scoring, info = _scoring_graph(sise_path)
    kept: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if precision == "fp32":
            variant = scoring
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            variant = convert_float_to_float16(scoring, keep_io_types=True)
        else:
            variant, kept = _quantized(scoring, info.graph.masked_batch, list(calibration), Path(tmp), float_layers)
    digest = hashlib.sha256(sise_path.read_bytes()).hexdigest()
    set_metadata(variant, VARIANT_KEY, json.dumps({"precision": precision, "parent_sha256": digest,
                                                   "masked_batch": info.graph.masked_batch,
                                                   "batch_scores": info.graph.batch_scores,
                                                   "num_classes": info.num_classes,
                                                   **({"float_nodes": kept} if precision == "int8" else {})}))
    out = Path(out_path)
    write_atomically(out, variant.SerializeToString())
    return out


def _quantized(scoring: onnx.ModelProto, input_name: str, calibration: list[np.ndarray], workdir: Path,
               float_layers: int, keep_activations: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """`scoring` with QDQ int8 static quantisation, BatchNorm folded first, the head and the
    first `float_layers` convolutions left in float; and the names of those float nodes.
    keep_activations keeps Relu/Clip nodes that onnxruntime would fold into the
    quantisation ranges (so that a Q/DQ pair can be taken out exactly: `layer_sensitivity`)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ExportError("int8 needs calibration batches of masked inputs")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    source, folded, target = workdir / "fp32.onnx", workdir / "folded.onnx", workdir / "int8.onnx"
    onnx.save(scoring, str(source))
    quant_pre_process(str(source), str(folded), skip_symbolic_shape=True)
    graph = onnx.load(str(folded)).graph
    kept = _leading_nodes(graph, float_layers) + _head_nodes(graph)
    quantize_static(str(folded), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=kept,
                    extra_options={"QDQKeepRemovableActivations": keep_activations})
    return onnx.load(str(target)), kept


def _leading_nodes(graph: onnx.GraphProto, convolutions: int) -> list[str]:
    """Names of the nodes before the (convolutions + 1)-th Conv (nodes are in topological
    order): the first `convolutions` convolutions and what runs between them."""
    convs = [i for i, n in enumerate(graph.node) if n.op_type == "Conv"]
    end = convs[convolutions] if convolutions < len(convs) else len(graph.node)
    return [n.name for n in graph.node[:end]]


def _head_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the classifier head: the last Gemm or MatMul (nodes are in topological
    order) and every node after it. Quantising the logits would flatten the small score
    differences between masks that SISE weighs."""
    heads = [i for i, n in enumerate(graph.node) if n.op_type in ("Gemm", "MatMul")]
    start = heads[-1] if heads else len(graph.node)
    return [n.name for n in graph.node[start:]]


def layer_sensitivity(scoring: onnx.ModelProto, calibration: Sequence[np.ndarray]) -> list[tuple[str, float]]:
    """Per convolution of the scoring graph `scoring` (input: a masked batch, output: scores
    (B, classes)), the error of the scores when that convolution alone runs in int8 (its
    input activation uint8 per tensor, its weights int8 per channel, ranges from
    `calibration`) and everything else in float: the RMS of the score difference over the
    std across the batch of the float scores, for each batch's highest-scoring class, the
    worst over the batches. The map of SISE eq. 12 is a score-weighted mean of masks, so what
    int8 must keep is the differences of the scores across the masks. Sorted, most sensitive first."""
    import onnxruntime as ort

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration]
    input_name = scoring.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        quantized, _ = _quantized(scoring, input_name, batches, Path(tmp), 0, keep_activations=True)
        folded = onnx.load(str(Path(tmp) / "folded.onnx"))

    def scores(model: onnx.ModelProto) -> list[np.ndarray]:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return [session.run(None, {input_name: b})[0] for b in batches]

    reference = scores(folded)
    tops = [int(np.argmax(r.mean(axis=0))) for r in reference]
    pairs = _activation_quantizers(quantized)
    out = []
    for node in quantized.graph.node:
        if node.op_type != "Conv" or node.input[0] not in {dq.output[0] for _, dqs in pairs.values() for dq in dqs}:
            continue
        source = next(t for t, (_, dqs) in pairs.items() if node.input[0] in {dq.output[0] for dq in dqs})
        alone = _float_weights(_keep_quantized(quantized, {source}), folded, keep={node.name})
        errors = [float(np.sqrt(np.mean((got[:, c] - ref[:, c]) ** 2)) / max(float(ref[:, c].std()), 1e-12))
                  for got, ref, c in zip(scores(alone), reference, tops)]
        out.append((node.name, max(errors)))
    return sorted(out, key=lambda item: -item[1])


def _activation_quantizers(model: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, list[onnx.NodeProto]]]:
    """Each quantised activation tensor (not an initializer): its QuantizeLinear and DequantizeLinear nodes."""
    constants = {t.name for t in model.graph.initializer}
    quantizers = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants}
    out: dict[str, tuple[onnx.NodeProto, list[onnx.NodeProto]]] = {q.input[0]: (q, []) for q in quantizers.values()}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in quantizers:
            out[quantizers[n.input[0]].input[0]][1].append(n)
    return out


def _keep_quantized(model: onnx.ModelProto, tensors: set[str]) -> onnx.ModelProto:
    """A copy of the QDQ `model` where only the activations `tensors` keep their Q/DQ pair;
    the consumers of the others read the float tensor."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    for tensor, (q, dqs) in _activation_quantizers(copy).items():
        if tensor not in tensors:
            dropped.update(n.output[0] for n in (q, *dqs))
            rename.update({dq.output[0]: tensor for dq in dqs})
    nodes = [n for n in copy.graph.node if n.output[0] not in dropped]
    for n in nodes:
        n.input[:] = [rename.get(x, x) for x in n.input]
    for o in copy.graph.output:
        o.name = rename.get(o.name, o.name)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _float_weights(model: onnx.ModelProto, folded: onnx.ModelProto, keep: set[str]) -> onnx.ModelProto:
    """A copy of the QDQ `model` whose convolutions other than `keep` read their float
    weights and biases (those of `folded`, the float graph it was quantised from)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    float_nodes = {n.name: n for n in folded.graph.node}
    float_constants = {t.name: t for t in folded.graph.initializer}
    constants = {t.name for t in copy.graph.initializer}
    dequantized = {n.output[0] for n in copy.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants}
    restored: set[str] = set()
    for n in copy.graph.node:
        if n.op_type == "Conv" and n.name in float_nodes and n.name not in keep:
            for i in range(1, len(n.input)):
                if n.input[i] in dequantized:
                    n.input[i] = float_nodes[n.name].input[i]
                    restored.add(n.input[i])
    used = {x for n in copy.graph.node for x in n.input}
    nodes = [n for n in copy.graph.node if not (n.output[0] in dequantized and (n.output[0] in restored
                                                                               or n.output[0] not in used))]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    copy.graph.initializer.extend(float_constants[name] for name in sorted(restored - constants))
    return copy
