"""EfficientNet-Lite0 as the peers see it, for the tests and benchmarks/bench_peers.py:
the eager torch network with a hook point at exactly our tap (pytorch-grad-cam, Captum),
and the scoring graph of the explainable ONNX in OpenVINO (OpenVINO XAI)."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper

from onnx_sise import Explainer
from onnx_sise.model.head import tap_tensor


class Tapped(torch.nn.Module):
    """`inner` behind an identity module, `tap`: a hook on `tap` sees exactly the tensor
    that enters `inner`, our tap (Lite0's head ReLU6 object also runs on the stem, so a
    hook on it would see both)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.tap = torch.nn.Identity()
        self.inner = inner

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return self.inner(self.tap(x), *args, **kwargs)


def tapped(model: torch.nn.Module, module: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A copy of `model` with the input of `module` (e.g. "_blocks.11", "_avg_pooling" for
    the deepest tap) behind an identity tap, and that tap."""
    copied = copy.deepcopy(model)
    parent, _, child = module.rpartition(".")
    wrapped = Tapped(copied.get_submodule(module))
    copied.get_submodule(parent).register_module(child, wrapped)  # parent "" is the model itself
    return copied, wrapped.tap


def plain_scoring_graph(explainable: Path, out: Path) -> Path:
    """The scoring graph of the explainable ONNX alone: masked_batch -> batch_scores (Psi)."""
    model = onnx.load(str(explainable))
    nodes = [n for n in model.graph.node if n.op_type != "If"]
    used = {i for n in nodes for i in n.input}
    weights = [t for t in model.graph.initializer if t.name in used and t.name != "masked_batch"]
    graph = helper.make_graph(
        nodes, "plain", [helper.make_tensor_value_info("masked_batch", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("batch_scores", TensorProto.FLOAT, ["N", 1000])], weights)
    plain = helper.make_model(graph, opset_imports=list(model.opset_import))
    plain.ir_version = model.ir_version
    onnx.save(plain, str(out))
    return out


def deepest_tap_layer(openvino_model: object, explainable: Path) -> str:
    """The friendly name of the OpenVINO node (of plain_scoring_graph's model) that makes
    the explainable ONNX's deepest tap: OpenVINO XAI's white-box target layer."""
    graph = onnx.load(str(explainable), load_external_data=False).graph
    tensor, _ = tap_tensor(graph, Explainer(explainable).info.taps[-1], str(explainable))
    return next(op.get_friendly_name() for op in openvino_model.get_ordered_ops()
                if any(tensor in output.get_names() for output in op.outputs()))
