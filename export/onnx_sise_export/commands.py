"""What the export package adds to `python -m onnx_sise`. The command line finds these by
entry point (pyproject.toml): group `onnx_sise.zoo`, one entry per model `export --zoo`
builds (each is `export_zoo`), and group `onnx_sise.commands`, the work of `variant`. The
runtime package never imports this one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnx_sise import Explainer

from .variants import DEFAULT_FLOAT_LAYERS, calibration_batches, write_scoring_variant


def write_variant(model: Path, output: Path, precision: str, photos: Sequence[Path],
                  float_layers: int | None = None) -> Path:
    """`variant`: the masked-pass graph of `model` in `precision`, int8 calibrated on `photos`
    with its first `float_layers` convolutions (default DEFAULT_FLOAT_LAYERS) in float."""
    explainer = Explainer(model, prepare=False)
    batches = calibration_batches(explainer, photos) if precision == "int8" else []
    return write_scoring_variant(model, output, precision, batches,
                                 DEFAULT_FLOAT_LAYERS if float_layers is None else float_layers)
