from __future__ import annotations

import dataclasses
import json

import pytest

from onnx_sise.errors import ModelError
from onnx_sise.model.info import InputSpec, ModelInfo, Tap


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


def _document(**changes: object) -> dict:
    document = json.loads(_info().to_json())
    document.update(changes)
    return document


@pytest.mark.parametrize("document,fragment", [
    (_document(num_classes="3"), "num_classes must be an integer"),
    (_document(num_classes=True), "num_classes must be an integer"),
    (_document(num_classes=3.0), "num_classes must be an integer"),
    (_document(format_version=True), "format version True"),
    (_document(input={**_document()["input"], "height": 224.5}), "input.height must be an integer"),
    (_document(input={**_document()["input"], "height": 10**9}), "input.height must be an integer from 1 to"),
    (_document(input={**_document()["input"], "scale": float("nan")}), "input.scale must be a number"),
    (_document(input={**_document()["input"], "mean": [0.0, 0.0]}), "input.mean must be a list of 3 numbers"),
    (_document(input={**_document()["input"], "std": [1.0, None, 1.0]}), "input.std must be a number"),
    (_document(input={**_document()["input"], "colour": "RGB"}), "input has an unknown field 'colour'"),
    (_document(input=None), "input must be an object"),
    (_document(labels=["a", 2, "c"]), "labels[1] must be text"),
    (_document(labels="abc"), "labels must be a list"),
    (_document(model_name="x" * 5000), "model_name must be text of at most"),
    (_document(taps=[None]), "taps[0] must be an object"),
    (_document(taps={"block0": {}}), "taps must be a list"),
    (_document(graph={"image": 7}), "graph.image must be text"),
    (_document(graph={"imagee": "image"}), "graph has an unknown field"),
    (_document(verification={"scores": "small"}), "verification.'scores' must be a number"),
    (_document(staged_gradient="gradient/from_tap"), "staged_gradient must be an object"),
    (_document(staged_gradient={"from_tap": 0}), "staged_gradient.from_tap must be text"),
    (_document(staged_gradient={"taps": "x"}), "staged_gradient has an unknown field 'taps'"),
])
def test_bad_input_metadata_fields_checked_by_type(document: dict, fragment: str) -> None:
    with pytest.raises(ModelError) as raised:
        ModelInfo.from_json(json.dumps(document))
    assert fragment in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


@pytest.mark.parametrize("text,fragment", [
    ("[" * 50_000 + "]" * 50_000, "nested more than"),
    ('{"a": ' * 20 + "1" + "}" * 20, "nested more than"),
    ('{"labels": "' + "[" * 100 + '"}', "format_version is missing"),  # brackets inside a string do not nest
    (" " * (17 * 2**20), "characters: more than"),
    ("{not json", "is not JSON"),
    ("null", "a JSON null, not an object"),
])
def test_bad_input_metadata_documents_bounded(text: str, fragment: str) -> None:
    with pytest.raises(ModelError) as raised:
        ModelInfo.from_json(text)
    message = str(raised.value)
    assert fragment in message and "\n" not in message, message


def test_staged_gradient_names_round_trip_and_are_absent_from_older_files() -> None:
    from onnx_sise.model.info import StagedGradient

    staged = ModelInfo.from_json(json.dumps(_document(staged_gradient={"from_tap": "a/b"})))
    assert staged.staged_gradient == StagedGradient(from_tap="a/b")
    assert ModelInfo.from_json(staged.to_json()) == staged
    older = _document()
    older.pop("staged_gradient", None)
    assert ModelInfo.from_json(json.dumps(older)).staged_gradient is None
