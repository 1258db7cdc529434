"""The peers' view of EfficientNet-Lite0 for the method tests: its scoring graph in
OpenVINO (OpenVINO XAI's ReciproCAM and AISE run on it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from peers import peer
from peers.lite0 import deepest_tap_layer, plain_scoring_graph


@pytest.fixture(scope="session")
def openvino_lite0(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str, Callable]:
    """Lite0's scoring graph in OpenVINO, the name of its node that makes the deepest tap, and
    a compiler in float32: OpenVINO's CPU plugin runs bf16 by default on CPUs with AMX or
    AVX512-BF16, which moves the scores by up to 0.05 (ours are float32 in onnxruntime)."""
    peer("openvino_xai")
    import openvino

    plain = plain_scoring_graph(lite0_path, tmp_path_factory.mktemp("openvino") / "lite0.onnx")
    model = openvino.Core().read_model(str(plain))
    layer = deepest_tap_layer(model, lite0_path)
    core = openvino.Core()
    return model, layer, lambda graph: core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
