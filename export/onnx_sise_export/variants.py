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
from onnx_sise.model.session import VARIANT_KEY

PRECISIONS = ("fp32", "fp16", "int8")
# Leading convolutions int8 keeps in float (bench_int8.py: the stem and first blocks of
# Lite0 are the layers whose quantisation breaks the map; RESULTS.md "int8 that keeps the map").
DEFAULT_FLOAT_LAYERS = 7


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
    names = info.graph
    nodes = [n for n in model.graph.node if n.op_type != "If"]
    used = {name for n in nodes for name in n.input}
    graph = onnx.helper.make_graph(
        nodes, "onnx_sise_scoring",
        [i for i in model.graph.input if i.name == names.masked_batch],
        [o for o in model.graph.output if o.name == names.batch_scores],
        initializer=[t for t in model.graph.initializer if t.name in used and t.name != names.masked_batch],
    )
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(f"{sise_path} has no scoring sub-graph: export it again with this version of onnx_sise")
    scoring = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    scoring.ir_version = model.ir_version
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
