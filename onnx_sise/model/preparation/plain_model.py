"""Reading a plain ONNX classifier made elsewhere (tf2onnx, Keras, paddle2onnx, either
PyTorch exporter) and what the graph alone cannot tell: input layout, size and
preprocessing (InputOverrides), and whether the output is logits or probabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnx_sise.errors import ExportError
from onnx_sise.model.external_data import check_external_data
from onnx_sise.model.info import InputSpec

MAX_INPUT_PIXELS = 4096 * 4096
MAX_PREPROCESSING = 1e6  # |scale|, |mean|, |std| at most; |scale|, |std| at least its inverse (float32 range)


@dataclass(frozen=True)
class InputOverrides:
    """What the graph cannot tell: None means infer (layout, size) or the default
    (colour RGB, scale 1/255, mean 0, std 1: a [0, 1] RGB input)."""

    layout: str | None = None
    size: tuple[int, int] | None = None
    color: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    output_kind: str | None = None


def read_model(path: Path) -> onnx.ModelProto:
    """The model at `path` with its external data, whose locations must stay beside it."""
    check_external_data(path, str(path))
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError for broken files
        raise ExportError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None


def image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    constants = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ExportError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)[:200]}): "
                          "an explainable classifier takes exactly one image")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(f"input {inputs[0].name!r} has {len(dims)} dimensions: expected a 4-D image batch "
                          "(NCHW or NHWC)")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError(f"input {inputs[0].name!r} is not float32: only float32 image inputs are supported")
    return inputs[0]


def describe_input(value: onnx.ValueInfoProto, overrides: InputOverrides) -> InputSpec:
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value.type.tensor_type.shape.dim]
    layout = overrides.layout
    if layout is None:
        if dims[1] in (1, 3) and dims[3] not in (1, 3):
            layout = "NCHW"
        elif dims[3] in (1, 3):
            layout = "NHWC"
        else:
            raise ExportError(f"cannot tell the layout of input shape {dims}: pass --layout NCHW or NHWC")
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    fixed = (height, width)
    if overrides.size is not None:
        height, width = overrides.size
    if height is None or width is None:
        raise ExportError(f"input {value.name!r} has a dynamic spatial size {dims}: prepare it with "
                          "`python -m onnx_sise export MODEL --input-size H,W -o MODEL.sise.onnx`")
    if height * width > MAX_INPUT_PIXELS:
        raise ExportError(f"input {value.name!r} is {height}x{width}: more than {MAX_INPUT_PIXELS} pixels "
                          "(an image classifier's input is smaller; set --input-size)")
    if any(side is not None and side != wanted for side, wanted in zip(fixed, (height, width))):
        raise ExportError(f"input {value.name!r} has the fixed size {fixed[0]}x{fixed[1]}: --input-size "
                          f"{height},{width} does not match it (drop --input-size)")
    if channels != 3:
        raise ExportError(f"input {value.name!r} has {channels} channels: only 3-channel image models are supported")
    numbers = (overrides.scale, *overrides.mean, *overrides.std)
    if (not all(math.isfinite(v) and abs(v) <= MAX_PREPROCESSING for v in numbers)
            or not all(abs(v) >= 1 / MAX_PREPROCESSING for v in (overrides.scale, *overrides.std))):
        raise ExportError(f"preprocessing scale {overrides.scale:g}, mean {list(overrides.mean)}, std "
                          f"{list(overrides.std)}: every value must be finite and within +-{MAX_PREPROCESSING:g}, "
                          f"and scale and std at least {1 / MAX_PREPROCESSING:g} in size")
    return InputSpec(height=height, width=width, channels=3, layout=layout, color=overrides.color,
                     scale=overrides.scale, mean=tuple(overrides.mean), std=tuple(overrides.std))


def output_kind_of(model: onnx.ModelProto) -> str:
    """probabilities after a final Softmax, sigmoid after a final Sigmoid, else logits
    (shape-only nodes between them and the output are looked through)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = model.graph.output[0].name
    while name in producers and producers[name].op_type in ("Identity", "Reshape", "Flatten", "Squeeze", "Cast"):
        name = producers[name].input[0]
    last = producers.get(name)
    if last is not None and last.op_type == "Softmax":
        return "probabilities"
    if last is not None and last.op_type == "Sigmoid":
        return "sigmoid"
    return "logits"
