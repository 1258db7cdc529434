from __future__ import annotations

import dataclasses
import json

import pytest

from onnx_sise.errors import ModelError
from onnx_sise.model_info import InputSpec, ModelInfo, Tap


def _info(**changes: object) -> ModelInfo:
    tap = Tap("block0", "layer2:input", 256, 56, 56, 4, "activation/block0", "gradient/block0")
    base = ModelInfo(model_name="m", input=InputSpec(224, 224), output_kind="logits", num_classes=3,
                     taps=(tap,), labels=("a", "b", "c"))
    return dataclasses.replace(base, **changes)


def test_round_trip() -> None:
    info = _info()
    assert ModelInfo.from_json(info.to_json()) == info
    assert info.label(2) == "c"


@pytest.mark.parametrize("changes,fragment", [
    ({"output_kind": "softmaxish"}, "output_kind"),
    ({"num_classes": 4}, "3 labels for 4 classes"),
    ({"taps": ()}, "no feature taps"),
    ({"input": InputSpec(224, 224, std=(1.0, 0.0, 1.0))}, "std has a zero"),
    ({"input": InputSpec(224, 224, layout="CHWN")}, "layout"),
])
def test_inconsistent_metadata_is_refused(changes: dict, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        ModelInfo.from_json(_info(**changes).to_json())


def test_malformed_or_future_metadata() -> None:
    with pytest.raises(ModelError, match="malformed"):
        ModelInfo.from_json(json.dumps({"format_version": 1}))
    with pytest.raises(ModelError, match="format version 99"):
        ModelInfo.from_json(json.dumps({"format_version": 99}))
