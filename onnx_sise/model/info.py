"""What an explainable ONNX carries in its metadata: preprocessing, score kind,
labels and feature taps (one per convolutional block, SISE "Block-Wise Feature
Explanation"). Written by the exporter, validated when a model is loaded."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ModelError

METADATA_KEY = "onnx_sise"
FORMAT_VERSION = 1
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
CHANNELS = 3

# Bounds of the metadata a model file may carry (the exporter writes far less: 4 levels
# of nesting, ~30 kB for ImageNet's labels).
MAX_METADATA_CHARS = 16 * 2**20
MAX_METADATA_DEPTH = 8
MAX_TEXT_CHARS = 1024
MAX_CLASSES = 2**20
MAX_TAPS = 64
MAX_TAP_CHANNELS = 2**16
MAX_INPUT_SIDE = 2**14
MAX_INPUT_PIXELS = 4096 * 4096
MAX_VERIFICATION_ENTRIES = 64
# Preprocessing constants are used in float32: |value| at most this, std at least MIN_STD.
MAX_PREPROCESSING_MAGNITUDE = 1e6
MIN_STD = 1e-6
MALFORMED = "explainable ONNX metadata is malformed"
JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


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
class StagedGradient:
    """Inputs of the staged gradient sub-graph (docs/design.md section 3, "A call pays for
    what it asks"): the shallowest tap differentiated to (int64) and the switch that
    makes the class weights' columns ranks (bool). Absent from files made before it; a
    top-level field, so that an older onnx_sise reads newer files (and runs every tap)."""

    from_tap: str = "gradient/from_tap"
    by_rank: str = "gradient/by_rank"


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
    staged_gradient: StagedGradient | None = None

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if class_id < len(self.labels) else f"class {class_id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """The metadata in `text`, every field checked by type and range (ModelError, one line)."""
        raw = Fields(parse_object(text, "explainable ONNX metadata"), "")
        version = raw.value("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise ModelError(f"explainable ONNX metadata has format version {_shown(version)}, "
                             f"this onnx_sise reads {FORMAT_VERSION}: export the model again")
        num_classes = raw.integer("num_classes", 1, MAX_CLASSES)
        info = cls(
            model_name=raw.text("model_name"),
            input=input_spec(raw.object("input")),
            output_kind=raw.choice("output_kind", OUTPUT_KINDS),
            num_classes=num_classes,
            taps=tuple(tap(entry) for entry in raw.objects("taps", MAX_TAPS)),
            labels=raw.texts("labels", MAX_CLASSES, default=()),
            graph=graph_names(raw.object("graph", optional=True)),
            verification=raw.numbers_by_name("verification", MAX_VERIFICATION_ENTRIES),
            staged_gradient=staged_gradient(raw),
        )
        info.validate()
        return info

    def validate(self) -> None:
        """Raise ModelError unless the description is self-consistent."""
        problems = []
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output_kind {self.output_kind!r} is not one of {OUTPUT_KINDS}")
        if self.input.layout not in LAYOUTS:
            problems.append(f"layout {self.input.layout!r} is not one of {LAYOUTS}")
        if self.input.color not in COLORS:
            problems.append(f"colour order {self.input.color!r} is not RGB or BGR")
        if len(self.input.mean) != self.input.channels or len(self.input.std) != self.input.channels:
            problems.append("mean and std need one value per input channel")
        if any(abs(s) < MIN_STD for s in self.input.std):
            problems.append(f"std has a zero (or a value below {MIN_STD})")
        if self.input.height * self.input.width > MAX_INPUT_PIXELS:
            problems.append(f"the input is {self.input.height}x{self.input.width}: more than {MAX_INPUT_PIXELS} pixels")
        if self.num_classes < 1:
            problems.append("the model has no classes")
        if not self.taps:
            problems.append("no feature taps")
        for tap in self.taps:
            if min(tap.channels, tap.height, tap.width) < 1:
                problems.append(f"tap {tap.name} has an empty shape")
            if tap.height > self.input.height or tap.width > self.input.width:
                problems.append(f"tap {tap.name} is larger than the input")
        if len({tap.name for tap in self.taps}) != len(self.taps):
            problems.append("two taps have the same name")
        if self.labels and len(self.labels) != self.num_classes:
            problems.append(f"{len(self.labels)} labels for {self.num_classes} classes")
        if problems:
            raise ModelError("explainable ONNX metadata is inconsistent: " + "; ".join(problems))


def parse_object(text: object, what: str) -> dict[str, Any]:
    """The JSON object in `text`, bounded in size and nesting before it is parsed."""
    if not isinstance(text, str):
        raise ModelError(f"{what} is not text: export the model again")
    if len(text) > MAX_METADATA_CHARS:
        raise ModelError(f"{what} is {len(text)} characters: more than the {MAX_METADATA_CHARS} accepted; "
                         "export the model again")
    if _nesting(text) > MAX_METADATA_DEPTH:
        raise ModelError(f"{what} is nested more than {MAX_METADATA_DEPTH} levels deep: export the model again")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{what} is not JSON ({str(exc)[:120]}): export the model again") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{MALFORMED if what.startswith('explainable') else what + ' is malformed'} "
                         f"(a JSON {JSON_TYPES.get(type(raw), 'value')}, not an object): export the model again")
    return raw


def _nesting(text: str) -> int:
    """How deep the brackets of the JSON `text` nest (brackets inside strings not counted)."""
    codes = np.frombuffer(JSON_STRING.sub('""', text).encode("utf-8", "replace"), np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """The fields of one JSON object of the metadata, each read by type and range;
    `where` ("input.") names the object in messages."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise ModelError(f"{MALFORMED} ({where.rstrip('.') or 'the document'} must be an object, got "
                             f"{_shown(raw)}): export the model again")
        self.raw, self.where = raw, where

    def refuse(self, key: str, wanted: str, value: object) -> ModelError:
        return ModelError(f"{MALFORMED} ({self.where}{key} must be {wanted}, got {_shown(value)}): "
                          "export the model again")

    def value(self, key: str, default: object = KeyError) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is KeyError:
            raise ModelError(f"{MALFORMED} ({self.where}{key} is missing): export the model again")
        return default

    def only(self, known: tuple[str, ...]) -> None:
        unknown = [key for key in self.raw if key not in known]
        if unknown:
            raise ModelError(f"{MALFORMED} ({self.where.rstrip('.')} has an unknown field {_shown(unknown[0])}): "
                             "export the model again")

    def integer(self, key: str, low: int, high: int, default: object = KeyError) -> int:
        value = self.value(key, default)
        if type(value) is not int or not low <= value <= high:
            raise self.refuse(key, f"the integer {low}" if low == high else f"an integer from {low} to {high}", value)
        return value

    def number(self, key: str, default: object = KeyError) -> float:
        value = self.value(key, default)
        if not _is_number(value) or abs(value) > MAX_PREPROCESSING_MAGNITUDE:
            raise self.refuse(key, f"a number from -{MAX_PREPROCESSING_MAGNITUDE:g} to {MAX_PREPROCESSING_MAGNITUDE:g}",
                              value)
        return float(value)

    def numbers(self, key: str, count: int, default: object = KeyError) -> tuple[float, ...]:
        values = self.value(key, default)
        if not isinstance(values, (list, tuple)) or len(values) != count:
            raise self.refuse(key, f"a list of {count} numbers", values)
        return tuple(Fields({key: v}, self.where).number(key) for v in values)

    def text(self, key: str, default: object = KeyError) -> str:
        value = self.value(key, default)
        if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            raise self.refuse(key, f"text of at most {MAX_TEXT_CHARS} characters", value)
        return value

    def texts(self, key: str, most: int, default: object = KeyError) -> tuple[str, ...]:
        values = self.value(key, default)
        if not isinstance(values, (list, tuple)) or len(values) > most:
            raise self.refuse(key, f"a list of at most {most} strings", values)
        for i, v in enumerate(values):
            if not isinstance(v, str) or len(v) > MAX_TEXT_CHARS:
                raise self.refuse(f"{key}[{i}]", f"text of at most {MAX_TEXT_CHARS} characters", v)
        return tuple(values)

    def choice(self, key: str, choices: tuple[str, ...], default: object = KeyError) -> str:
        value = self.value(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self.refuse(key, f"one of {', '.join(choices)}", value)
        return value

    def object(self, key: str, optional: bool = False) -> Fields:
        return Fields(self.value(key, {} if optional else KeyError), f"{self.where}{key}.")

    def objects(self, key: str, most: int) -> list[Fields]:
        values = self.value(key)
        if not isinstance(values, list) or len(values) > most:
            raise self.refuse(key, f"a list of at most {most} objects", values)
        return [Fields(v, f"{self.where}{key}[{i}].") for i, v in enumerate(values)]

    def numbers_by_name(self, key: str, most: int) -> dict[str, float]:
        values = Fields(self.value(key, {}), f"{self.where}{key}.")
        if len(values.raw) > most:
            raise self.refuse(key, f"at most {most} entries", f"{len(values.raw)} entries")
        for name, value in values.raw.items():
            if len(name) > MAX_TEXT_CHARS or not _is_number(value, finite=False):
                raise values.refuse(_shown(name), "a number", value)
        return {name: float(value) for name, value in values.raw.items()}


def _is_number(value: object, finite: bool = True) -> bool:
    return type(value) in (int, float) and (not finite or math.isfinite(value))


def input_spec(raw: Fields) -> InputSpec:
    raw.only(tuple(f.name for f in fields(InputSpec)))
    channels = raw.integer("channels", CHANNELS, CHANNELS, default=CHANNELS)
    return InputSpec(
        height=raw.integer("height", 1, MAX_INPUT_SIDE), width=raw.integer("width", 1, MAX_INPUT_SIDE),
        channels=channels, layout=raw.choice("layout", LAYOUTS, default="NCHW"),
        color=raw.choice("color", COLORS, default="RGB"), scale=raw.number("scale", default=1.0),
        mean=raw.numbers("mean", channels, default=[0.0] * channels),
        std=raw.numbers("std", channels, default=[1.0] * channels))


def tap(raw: Fields) -> Tap:
    raw.only(tuple(f.name for f in fields(Tap)))
    return Tap(name=raw.text("name"), source=raw.text("source"),
               channels=raw.integer("channels", 1, MAX_TAP_CHANNELS), height=raw.integer("height", 1, MAX_INPUT_SIDE),
               width=raw.integer("width", 1, MAX_INPUT_SIDE), reduction=raw.integer("reduction", 1, MAX_INPUT_SIDE),
               activation_output=raw.text("activation_output"), gradient_output=raw.text("gradient_output"))


def graph_names(raw: Fields) -> GraphNames:
    names = tuple(f.name for f in fields(GraphNames))
    raw.only(names)
    return GraphNames(**{name: raw.text(name) for name in names if name in raw.raw})


def staged_gradient(raw: Fields) -> StagedGradient | None:
    if raw.value("staged_gradient", None) is None:
        return None
    names = raw.object("staged_gradient")
    known = tuple(f.name for f in fields(StagedGradient))
    names.only(known)
    return StagedGradient(**{name: names.text(name) for name in known if name in names.raw})
