"""What an explainable ONNX carries in its metadata: preprocessing, score kind,
labels and feature taps (one per convolutional block, SISE "Block-Wise Feature
Explanation"). Written by the exporter, validated when a model is loaded."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ModelError

METADATA_KEY = "onnx_sise"
FORMAT_VERSION = 1
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class InputSpec:
    """How a photo becomes the model's input tensor: resize whole to (height, width),
    then x = (pixel * scale - mean) / std per channel, in `color` order."""

    height: int
    width: int
    channels: int = 3
    layout: str = "NCHW"
    color: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Tap:
    """One block output: the graph outputs holding it and its gradient."""

    name: str
    source: str
    channels: int
    height: int
    width: int
    reduction: int
    activation_output: str
    gradient_output: str


@dataclass(frozen=True)
class GraphNames:
    """Tensor names of the sub-graphs of an explainable ONNX: the gradient sub-graph
    (batch 1), the scoring sub-graph (any batch) and the mask-gradient sub-graph of
    SIGCAM (AOP eq. 6; fixed batch, absent from files exported before it existed)."""

    image: str = "image"
    target_weights: str = "target_weights"
    logit_weights: str = "logit_weights"
    logits: str = "logits"
    scores: str = "scores"
    masked_batch: str = "masked_batch"
    batch_scores: str = "batch_scores"
    gradient_switch: str = "gradient/enabled"
    mask_switch: str = "mask/enabled"
    mask_image: str = "mask/image"
    mask_baseline: str = "mask/baseline"
    masks: str = "mask/masks"
    mask_noise: str = "mask/noise"
    mask_target_weights: str = "mask/target_weights"
    mask_scores: str = "mask/scores"
    mask_gradients: str = "mask/gradients"


@dataclass(frozen=True)
class ModelInfo:
    """Everything the explain path needs besides the graph itself.

    `output_kind` says what the model emits: "logits" (the score Psi is their softmax),
    "probabilities" (used as they are) or "sigmoid" (multi-label logits, Psi = sigmoid).
    `scores` / `batch_scores` already hold Psi, so the runtime never applies it again.
    """

    model_name: str
    input: InputSpec
    output_kind: str
    num_classes: int
    taps: tuple[Tap, ...]
    labels: tuple[str, ...] = ()
    graph: GraphNames = field(default_factory=GraphNames)
    verification: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if class_id < len(self.labels) else f"class {class_id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        try:
            raw: dict[str, Any] = json.loads(text)
            if raw.get("format_version") != FORMAT_VERSION:
                raise ModelError(
                    f"explainable ONNX metadata has format version {raw.get('format_version')}, "
                    f"this onnx_sise reads {FORMAT_VERSION}: export the model again"
                )
            spec = raw["input"]
            info = cls(
                model_name=raw["model_name"],
                input=InputSpec(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])}),
                output_kind=raw["output_kind"],
                num_classes=int(raw["num_classes"]),
                taps=tuple(Tap(**tap) for tap in raw["taps"]),
                labels=tuple(raw.get("labels", ())),
                graph=GraphNames(**raw.get("graph", {})),
                verification=dict(raw.get("verification", {})),
            )
        except ModelError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"explainable ONNX metadata is malformed ({exc!s}): export the model again") from None
        info.validate()
        return info

    def validate(self) -> None:
        """Raise ModelError unless the description is self-consistent."""
        problems = []
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output_kind {self.output_kind!r} is not one of {OUTPUT_KINDS}")
        if self.input.layout not in LAYOUTS:
            problems.append(f"layout {self.input.layout!r} is not one of {LAYOUTS}")
        if self.input.color not in ("RGB", "BGR"):
            problems.append(f"colour order {self.input.color!r} is not RGB or BGR")
        if len(self.input.mean) != self.input.channels or len(self.input.std) != self.input.channels:
            problems.append("mean and std need one value per input channel")
        if any(s == 0 for s in self.input.std):
            problems.append("std has a zero")
        if self.num_classes < 1:
            problems.append("the model has no classes")
        if not self.taps:
            problems.append("no feature taps")
        for tap in self.taps:
            if min(tap.channels, tap.height, tap.width) < 1:
                problems.append(f"tap {tap.name} has an empty shape")
        if self.labels and len(self.labels) != self.num_classes:
            problems.append(f"{len(self.labels)} labels for {self.num_classes} classes")
        if problems:
            raise ModelError("explainable ONNX metadata is inconsistent: " + "; ".join(problems))
