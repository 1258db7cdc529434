"""Copies of the masked-pass (scoring) sub-graph of an explainable ONNX: fp32 (alone in
its session, as CUDA graphs need), fp16 for GPUs with tensor cores, int8 (static QDQ
quantisation, per-channel weights) for CPUs with fast int8 paths. A variant is a separate file; the gradient call
stays in float32 in the explainable ONNX, and `Explainer(..., scoring_model=variant)`
runs the masked passes through the variant. Fidelity is the user's to check on their
photos (benchmarks/bench_levers.py reports map correlations with float32)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnx.utils

from onnx_sise.errors import ExportError, ModelError
from onnx_sise.image_io import write_atomically
from onnx_sise.model_info import METADATA_KEY, ModelInfo
from onnx_sise.session import VARIANT_KEY

from .onnx_graph import fold_constants, set_metadata

PRECISIONS = ("fp32", "fp16", "int8")


def _scoring_graph(sise_path: Path, workdir: Path) -> tuple[onnx.ModelProto, ModelInfo]:
    model = onnx.load(str(sise_path), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in metadata:
        raise ModelError(f"{sise_path} is not an explainable ONNX: export it first")
    info = ModelInfo.from_json(metadata[METADATA_KEY])
    g = info.graph
    extracted = workdir / "scoring.onnx"
    onnx.utils.extract_model(str(sise_path), str(extracted), [g.masked_batch], [g.batch_scores])
    scoring = onnx.load(str(extracted))
    batch_input = next(i for i in model.graph.input if i.name == g.masked_batch)
    defaults = [i for i in scoring.graph.initializer if i.name == g.masked_batch]
    for default in defaults:  # the joined model's zero default: a real input here
        scoring.graph.initializer.remove(default)
    if not any(i.name == g.masked_batch for i in scoring.graph.input):
        scoring.graph.input.append(batch_input)
    return fold_constants(scoring), info


def write_scoring_variant(sise_path: str | os.PathLike[str], out_path: str | os.PathLike[str], precision: str,
                          calibration: Iterable[np.ndarray] = ()) -> Path:
    """Write the scoring sub-graph of `sise_path` in `precision` ("fp32", "fp16" or "int8") to
    `out_path`. int8 needs `calibration`: batches (B, C, H, W) of masked model inputs like
    those it will score (e.g. real photos times SISE masks)."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    sise_path = Path(sise_path)
    with tempfile.TemporaryDirectory() as tmp:
        scoring, info = _scoring_graph(sise_path, Path(tmp))
        if precision == "fp32":
            variant = scoring
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            variant = convert_float_to_float16(scoring, keep_io_types=True)
        else:
            variant = _quantized(scoring, info, list(calibration), Path(tmp))
    digest = hashlib.sha256(sise_path.read_bytes()).hexdigest()
    set_metadata(variant, VARIANT_KEY, json.dumps({"precision": precision, "parent_sha256": digest,
                                                   "masked_batch": info.graph.masked_batch,
                                                   "batch_scores": info.graph.batch_scores,
                                                   "num_classes": info.num_classes}))
    out = Path(out_path)
    write_atomically(out, variant.SerializeToString())
    return out


def _quantized(scoring: onnx.ModelProto, info: ModelInfo, calibration: list[np.ndarray],
               workdir: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    if not calibration:
        raise ExportError("int8 needs calibration batches of masked inputs")
    name = info.graph.masked_batch

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {name: np.ascontiguousarray(batch, dtype=np.float32)}

    source, target = workdir / "fp32.onnx", workdir / "int8.onnx"
    onnx.save(scoring, str(source))
    quantize_static(str(source), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True)
    return onnx.load(str(target))
