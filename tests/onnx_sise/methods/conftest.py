"""The peers' view of EfficientNet-Lite0 for the method tests: its scoring graph in
OpenVINO (OpenVINO XAI's ReciproCAM and AISE run on it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from peers import peer

from onnx_sise import Explainer
from onnx_sise.model.head import tap_tensor


def _plain_scoring_graph(explainable: Path, out: Path) -> Path:
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


@pytest.fixture(scope="session")
def openvino_lite0(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str, Callable]:
    """Lite0's scoring graph in OpenVINO, the name of its node that makes the deepest tap, and
    a compiler in float32: OpenVINO's CPU plugin runs bf16 by default on CPUs with AMX or
    AVX512-BF16, which moves the scores by up to 0.05 (ours are float32 in onnxruntime)."""
    peer("openvino_xai")
    import openvino

    plain = _plain_scoring_graph(lite0_path, tmp_path_factory.mktemp("openvino") / "lite0.onnx")
    model = openvino.Core().read_model(str(plain))
    explainable = onnx.load(str(lite0_path), load_external_data=False)
    tensor, _ = tap_tensor(explainable.graph, Explainer(lite0_path).info.taps[-1], str(lite0_path))
    layer = next(op.get_friendly_name() for op in model.get_ordered_ops()
                 if any(tensor in output.get_names() for output in op.outputs()))
    core = openvino.Core()
    return model, layer, lambda graph: core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
