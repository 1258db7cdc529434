"""Plain ONNX classifiers made elsewhere (tf2onnx, a PyTorch export with dynamic axes,
preprocessing baked in) turned into explainable ones: onnx2torch to a torch.fx module,
then the same taps and gradient export as a PyTorch model (DESIGN.md section 3).

Steps: read and check the graph (one 4-D image input, class scores out); fix the batch
to 1 and let onnxruntime's BASIC optimisation fold run-time shape arithmetic into
constants; convert with onnx2torch; make constant-shape Reshapes batch-flexible; find
the taps on the fx graph (the input of every downsampling op, walked back to the nearest
tensor that every path from the image to the output passes through).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
import torch
from torch import fx

from onnx_sise.errors import ExportError
from onnx_sise.model_files import check_external_data
from onnx_sise.model_info import InputSpec, ModelInfo

from .pipeline import export_explainable
from .taps import TapSite

log = logging.getLogger("onnx_sise.export")
DOWNSAMPLING_CLASSES = ("conv", "pool", "mean", "reduce")
ONNX2TORCH_OPSET = 17


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


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ExportError(f"model file not found: {path}" if not path.exists() else f"{path} is not a file")
    check_external_data(path, str(path))
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError for broken files
        raise ExportError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None


def image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    constants = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ExportError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): "
                          "an explainable classifier takes exactly one image")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(f"input {inputs[0].name!r} has {len(dims)} dimensions: expected a 4-D image batch "
                          "(NCHW or NHWC)")
    return inputs[0]


def describe_input(value: onnx.ValueInfoProto, overrides: InputOverrides) -> InputSpec:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    layout = overrides.layout
    if layout is None:
        if dims[1] in (1, 3) and dims[3] not in (1, 3):
            layout = "NCHW"
        elif dims[3] in (1, 3):
            layout = "NHWC"
        else:
            raise ExportError(f"cannot tell the layout of input shape {dims}: pass --layout NCHW or NHWC")
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if overrides.size is not None:
        height, width = overrides.size
    if height is None or width is None:
        raise ExportError(f"input {value.name!r} has a dynamic spatial size {dims}: prepare it with "
                          "`python -m onnx_sise export MODEL --input-size H,W -o MODEL.sise.onnx`")
    if channels != 3:
        raise ExportError(f"input {value.name!r} has {channels} channels: only 3-channel image models are supported")
    return InputSpec(height=height, width=width, channels=3, layout=layout, color=overrides.color,
                     scale=overrides.scale, mean=tuple(overrides.mean), std=tuple(overrides.std))


def output_kind_of(model: onnx.ModelProto) -> str:
    """probabilities after a final Softmax, sigmoid after a final Sigmoid, else logits
    (shape-only nodes between them and the output are looked through)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = model.graph.output[0].name
    while name in producers and producers[name].op_type in ("Identity", "Reshape", "Flatten", "Squeeze"):
        name = producers[name].input[0]
    last = producers.get(name)
    if last is not None and last.op_type == "Softmax":
        return "probabilities"
    if last is not None and last.op_type == "Sigmoid":
        return "sigmoid"
    return "logits"


def fold_for_batch_one(model: onnx.ModelProto, value: onnx.ValueInfoProto, spec: InputSpec,
                       workdir: Path) -> onnx.ModelProto:
    """Batch fixed to 1 and run-time shape arithmetic folded by onnxruntime (BASIC level)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    image = next(i for i in fixed.graph.input if i.name == value.name)
    dims = image.type.tensor_type.shape.dim
    shape = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
    for d, size in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = size
    for output in fixed.graph.output:
        if len(output.type.tensor_type.shape.dim):
            output.type.tensor_type.shape.dim[0].ClearField("dim_param")
            output.type.tensor_type.shape.dim[0].dim_value = 1
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(workdir / "folded.onnx")
    try:
        session = ort.InferenceSession(fixed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {value.name: np.zeros(shape, np.float32)})
    except Exception as exc:  # onnxruntime's own error types
        raise ExportError(f"onnxruntime cannot run the model with batch 1 ({str(exc).splitlines()[0][:200]})") from None
    scores = outputs[0]
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ExportError(f"the model's first output has shape {list(scores.shape)}: expected class scores "
                          "(batch, classes); detection and segmentation models cannot be explained")
    return onnx.load(str(workdir / "folded.onnx"))


def _onnx2torch():  # noqa: ANN202
    """onnx2torch, importable without torchvision (used only by its NMS and RoIAlign)."""
    if importlib.util.find_spec("onnx2torch") is None:
        raise ExportError("preparing a plain ONNX needs onnx2torch: pip install --no-deps onnx2torch")
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        def refuse(*args: object, **kwargs: object) -> None:
            raise ExportError("NonMaxSuppression and RoiAlign need torchvision, which is not installed")

        stand_in = types.ModuleType("torchvision")
        ops = types.ModuleType("torchvision.ops")
        ops.nms = ops.roi_align = ops.box_convert = refuse
        stand_in.ops = ops
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, ops
        try:
            import onnx2torch
        finally:  # torch.onnx must keep seeing that torchvision is absent
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    import onnx2torch
    from onnx2torch.node_converters import get_converter

    return onnx2torch, get_converter


def convert(model: onnx.ModelProto) -> fx.GraphModule:
    onnx2torch, get_converter = _onnx2torch()
    model = _opset_onnx2torch_reads(model)
    opsets = {o.domain or "": o.version for o in model.opset_import}
    for node in model.graph.node:
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(node.domain or "", 1),
                          domain=node.domain or "")
        except NotImplementedError:
            raise ExportError(f"op {node.op_type} (node {node.name!r}) cannot be converted for the gradient "
                              "export: no onnx2torch converter") from None
    try:
        module = onnx2torch.convert(model)
    except NotImplementedError as exc:
        raise ExportError(f"the model cannot be converted: {exc}") from None
    return _flexible_reshapes(module.eval())


def _opset_onnx2torch_reads(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx2torch registers most ops up to opset 17; newer versions of the same ops
    (18-21 mostly widen types) are converted down first."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if version <= ONNX2TORCH_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, ONNX2TORCH_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ValidationError subtypes
        raise ExportError(f"opset {version} could not be converted to opset {ONNX2TORCH_OPSET} for onnx2torch "
                          f"({str(exc).splitlines()[0][:160]})") from None


def batch_reshape(x: torch.Tensor, rest: tuple[int, ...]) -> torch.Tensor:
    return torch.reshape(x, (x.shape[0], *rest))


def _flexible_reshapes(module: fx.GraphModule) -> fx.GraphModule:
    """onnx2torch's Reshape branches on the values of its shape tensor, which make_fx
    cannot trace; a constant shape becomes torch.reshape with the batch left free."""
    modules = dict(module.named_modules())
    for node in list(module.graph.nodes):
        if node.op != "call_module" or type(modules[node.target]).__name__ != "OnnxReshape":
            continue
        source = node.args[1]
        if getattr(source, "op", None) != "get_attr":
            continue
        shape = [int(v) for v in _attr(module, source.target).tolist()]
        with module.graph.inserting_after(node):
            replacement = module.graph.call_function(batch_reshape, (node.args[0], tuple(shape[1:])))
        node.replace_all_uses_with(replacement)
        module.graph.erase_node(node)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def _attr(module: torch.nn.Module, target: str) -> torch.Tensor:
    value: object = module
    for part in target.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def fx_taps(module: fx.GraphModule, example: torch.Tensor) -> list[TapSite]:
    """Taps of a graph with no module structure: the input of each downsampling op (and
    of a Flatten of unpooled feature maps into the head), walked back to the nearest
    tensor that every path from the image to the output passes through (ResNet's strided
    3x3 then gives the block input, not its own input)."""
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(module).propagate(example)
    nodes = list(module.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    placeholder = next(n for n in nodes if n.op == "placeholder")
    output = next(n for n in nodes if n.op == "output")
    modules = dict(module.named_modules())
    convolutions = {n for n in nodes if n.op == "call_module" and "conv" in type(modules[n.target]).__name__.lower()}
    dominators = [n for n in nodes if n.op == "call_module" and _dominates(n, placeholder, output)
                  and (n in convolutions or _ancestors(n) & convolutions)]
    if not any(_lowers_resolution(node, modules) for node in nodes):
        raise ExportError("the model never lowers the spatial resolution: no convolutional blocks to explain")
    sites: list[TapSite] = []
    for node in nodes:
        if not (_lowers_resolution(node, modules) or _flattens_feature_maps(node, modules)):
            continue
        source = node.args[0]
        ancestors = _ancestors(source) | {source}
        chosen = max((d for d in dominators if d in ancestors), key=order.get, default=None)
        if chosen is None or _shape(chosen) is None or len(_shape(chosen)) != 4:
            continue
        if tuple(_shape(chosen)) == tuple(example.shape) or chosen.meta.get("tensor_meta") is None:
            continue
        site = TapSite("module_output", module=str(chosen.target))
        if site not in sites:
            sites.append(site)
    if not sites:
        raise ExportError("the model never lowers the spatial resolution: no convolutional blocks to explain")
    return sites


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _lowers_resolution(node: fx.Node, modules: dict) -> bool:
    if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    kind = type(modules[node.target]).__name__.lower()
    if not any(k in kind for k in DOWNSAMPLING_CLASSES):
        return False
    before, after = _shape(node.args[0]), _shape(node)
    if before is None or after is None or len(before) != 4:
        return False
    if len(after) == 4:
        return 2 * after[-2] <= before[-2] + 1 or 2 * after[-1] <= before[-1] + 1
    return len(after) == 2 and after[-1] == before[1]


def _flattens_feature_maps(node: fx.Node, modules: dict) -> bool:
    """A Flatten/Reshape of conv feature maps straight into the classifier (no pooling
    before it) closes the last block too."""
    flattening = (node.op == "call_module" and "flatten" in type(modules[node.target]).__name__.lower()) or \
        node.target is batch_reshape
    if not flattening or not isinstance(node.args[0], fx.Node):
        return False
    source = node.args[0]
    before, after = _shape(source), _shape(node)
    pooled = source.op == "call_module" and "pool" in type(modules[source.target]).__name__.lower()
    return before is not None and after is not None and len(before) == 4 and len(after) == 2 and not pooled


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _dominates(candidate: fx.Node, start: fx.Node, end: fx.Node) -> bool:
    """Every path from start to end passes through candidate."""
    seen = {candidate, start}
    stack = [start]
    while stack:
        for user in stack.pop().users:
            if user is end:
                return False
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return True


def prepare_onnx(path: str | Path, out: str | Path, overrides: InputOverrides = InputOverrides(),
                 tap_modules: Sequence[str] = ()) -> ModelInfo:
    """Write an explainable ONNX for the plain ONNX classifier at `path`."""
    path = Path(path)
    model = _load(path)
    value = image_input(model)
    spec = describe_input(value, overrides)
    kind = overrides.output_kind or output_kind_of(model)
    with tempfile.TemporaryDirectory() as tmp:
        folded = fold_for_batch_one(model, value, spec, Path(tmp))
    module = convert(folded)
    shape = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
    sites = None if tap_modules else fx_taps(module, torch.zeros(shape))
    log.info("input: %s; output kind: %s", spec, kind)
    return export_explainable(module, out, model_name=path.stem, input_spec=spec, output_kind=kind,
                              tap_modules=tap_modules, tap_sites=sites)
