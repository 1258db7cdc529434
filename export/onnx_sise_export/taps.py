"""Finding the last layer of every convolutional block (SISE, "Block-Wise Feature
Explanation") from one traced forward pass, with no per-model table.

Rule: for every op that lowers the spatial resolution (strided convolution, pooling,
global pooling or a spatial mean), take the largest enclosing module that lowers the
resolution exactly once (all its downsampling ops land on the same resolution); the input of that module is a tap, unless it is the image.
Where no enclosing module qualifies, the tap is the input of the op itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from onnx_sise.errors import ExportError

SPATIAL_OPS = ("conv", "pool")
SPATIAL_REDUCTIONS = ("mean", "amax", "sum", "max", "logsumexp")


@dataclass(frozen=True)
class TapSite:
    """Where a tap is read. kind: "module_input", "module_output" or "op_input"
    (`op_index` counts downsampling ops in call order)."""

    kind: str
    module: str = ""
    op_index: int = -1

    def describe(self) -> str:
        return f"{self.module}:{self.kind.split('_')[1]}" if self.kind != "op_input" else f"op#{self.op_index}:input"


@dataclass
class _Frame:
    name: str
    input_tensor: torch.Tensor | None
    events: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Event:
    index: int
    input_tensor: torch.Tensor
    out_size: tuple[int, int]
    stack: tuple[_Frame, ...]


def _first_4d(args: Sequence[object]) -> torch.Tensor | None:
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dim() == 4:
            return arg
    return None


def _spatial(t: torch.Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


def _downsampling(func: object, args: Sequence[object], out: object) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """(input, output size) when `func` lowers the spatial resolution of a 4-D tensor."""
    name = getattr(func, "__name__", "").lower()
    x = args[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4 else None
    if x is None or not isinstance(out, torch.Tensor):
        return None
    if any(key in name for key in SPATIAL_OPS) and out.dim() == 4:
        # At least halved: a "same"-padded stride-1 convolution (225 -> 224) does not count.
        if 2 * out.shape[-2] <= x.shape[-2] + 1 or 2 * out.shape[-1] <= x.shape[-1] + 1:
            return x, _spatial(out)
    if name in SPATIAL_REDUCTIONS and out.dim() in (2, 4) and out.numel() * x.shape[-2] * x.shape[-1] == x.numel():
        return x, (1, 1)
    return None


class _DownsamplingRecorder(TorchFunctionMode):
    def __init__(self, stack: list[_Frame]) -> None:
        super().__init__()
        self.stack = stack
        self.events: list[_Event] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        found = _downsampling(func, args, out)
        if found is not None:
            event = _Event(len(self.events), found[0], found[1], tuple(self.stack))
            self.events.append(event)
            for frame in self.stack:
                frame.events.append(event.index)
        return out


@contextmanager
def _module_stack(model: nn.Module, stack: list[_Frame], calls: dict[str, int]) -> Iterator[None]:
    names = {id(m): n for n, m in model.named_modules()}

    def push(module: nn.Module, args: tuple) -> None:
        name = names.get(id(module))
        if name is None:
            return
        x = _first_4d(args)
        stack.append(_Frame(name, x))
        calls[name] = calls.get(name, 0) + 1

    def pop(module: nn.Module, args: tuple, output: object) -> None:
        if names.get(id(module)) is not None:
            stack.pop()

    handles = [
        nn.modules.module.register_module_forward_pre_hook(push),
        nn.modules.module.register_module_forward_hook(pop),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _lowers_once(frame: _Frame, events: list[_Event]) -> bool:
    """Every downsampling op inside the module lands on the same resolution (ResNet's
    layer2 holds two, its strided 3x3 and its shortcut, both 56 -> 28)."""
    if frame.input_tensor is None or not frame.events:
        return False
    return len({events[i].out_size for i in frame.events}) == 1


def find_taps(model: nn.Module, example: torch.Tensor) -> list[TapSite]:
    """Tap sites of `model` in forward order, shallowest block first."""
    stack: list[_Frame] = []
    calls: dict[str, int] = {}
    recorder = _DownsamplingRecorder(stack)
    with torch.no_grad(), _module_stack(model, stack, calls), recorder:
        model(example)
    events = recorder.events
    if not events:
        raise ExportError("the model never lowers the spatial resolution: no convolutional blocks to explain")
    sites: list[TapSite] = []
    seen: list[torch.Tensor] = []
    for event in events:
        site, tensor = TapSite("op_input", op_index=event.index), event.input_tensor
        for frame in event.stack:
            if frame.name and calls.get(frame.name) == 1 and _lowers_once(frame, events):
                site, tensor = TapSite("module_input", module=frame.name), frame.input_tensor
                break
        if tensor is None or tensor is example or tuple(tensor.shape) == tuple(example.shape):
            continue
        if any(tensor is t for t in seen):
            continue
        seen.append(tensor)
        sites.append(site)
    if not sites:
        raise ExportError("no feature tap found between the image and the classifier head")
    return sites


def taps_from_names(model: nn.Module, names: Sequence[str]) -> list[TapSite]:
    """Override: the outputs of the named modules are the taps."""
    known = dict(model.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise ExportError(f"--taps names modules the model does not have: {', '.join(missing)}")
    return [TapSite("module_output", module=n) for n in names]


class TapCapture:
    """Collects the tap tensors during one forward pass (hooks and the op recorder)."""

    def __init__(self, model: nn.Module, sites: Sequence[TapSite]) -> None:
        self.model = model
        self.sites = list(sites)
        self.tensors: list[torch.Tensor | None] = [None] * len(self.sites)

    @contextmanager
    def capture(self) -> Iterator[list[torch.Tensor | None]]:
        self.tensors = [None] * len(self.sites)
        modules = dict(self.model.named_modules())
        handles = []
        for i, site in enumerate(self.sites):
            if site.kind == "module_input":
                handles.append(modules[site.module].register_forward_pre_hook(self._keep_input(i)))
            elif site.kind == "module_output":
                handles.append(modules[site.module].register_forward_hook(self._keep_output(i)))
        op_sites = {site.op_index: i for i, site in enumerate(self.sites) if site.kind == "op_input"}
        recorder = _OpInputCapture(op_sites, self.tensors) if op_sites else None
        try:
            if recorder is not None:
                with recorder:
                    yield self.tensors
            else:
                yield self.tensors
        finally:
            for handle in handles:
                handle.remove()
        if any(t is None for t in self.tensors):
            lost = [s.describe() for s, t in zip(self.sites, self.tensors) if t is None]
            raise ExportError(f"feature taps were not reached in the forward pass: {', '.join(lost)}")

    def _keep_input(self, i: int):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> None:
            self.tensors[i] = _first_4d(args)

        return hook

    def _keep_output(self, i: int):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            self.tensors[i] = output if isinstance(output, torch.Tensor) else None

        return hook


class _OpInputCapture(TorchFunctionMode):
    def __init__(self, wanted: dict[int, int], tensors: list[torch.Tensor | None]) -> None:
        super().__init__()
        self.wanted = wanted
        self.tensors = tensors
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        found = _downsampling(func, args, out)
        if found is not None:
            if self.count in self.wanted:
                self.tensors[self.wanted[self.count]] = found[0]
            self.count += 1
        return out
