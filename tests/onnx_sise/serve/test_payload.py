"""Parsing a served request, without a server: every instance form gives the photo an
independent decoder (scikit-image) reads, parameters are checked by the methods' option
records, and every bad request is one RequestError line."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from skimage import io

from onnx_sise.errors import ImageError, RequestError, SiseError, TargetError
from onnx_sise.methods import option_fields
from onnx_sise.serve.payload import parse_request, query_parameters

CLASSES, PIXELS = 1000, 1 << 22


def parse(body: object) -> object:
    return parse_request(body, CLASSES, PIXELS)


@pytest.fixture(scope="module")
def coffee_b64(photos: Path) -> str:
    return base64.b64encode((photos / "coffee.png").read_bytes()).decode()


def test_every_instance_form_is_the_photo(photos: Path, coffee_b64: str) -> None:
    rgb = io.imread(photos / "coffee.png")[..., :3]
    forms = [{"image_bytes": {"b64": coffee_b64}}, {"b64": coffee_b64}, coffee_b64, rgb[:5, :7].tolist()]
    request = parse({"instances": forms})
    for image in request.images[:3]:
        assert np.array_equal(image, rgb)
    assert np.array_equal(request.images[3], rgb[:5, :7])
    raw = parse_request((photos / "coffee.png").read_bytes(), CLASSES, PIXELS, query={"method": "gradcam"})
    assert np.array_equal(raw.images[0], rgb) and raw.method == "gradcam"


def test_parameters_are_the_apis(coffee_b64: str) -> None:
    request = parse({"instances": [coffee_b64], "parameters": {"method": "sise", "targets": [1, 2], "mu": 0.5,
                                                                "max_seconds": 3, "map": "both"}})
    assert (request.method, request.targets, request.top_k, request.max_seconds, request.map_format,
            request.options) == ("sise", [1, 2], None, 3, "both", {"mu": 0.5})
    assert parse({"instances": [coffee_b64], "parameters": {"target": 7}}).targets == [7]
    assert parse({"instances": [coffee_b64], "parameters": {"top_k": 3}}).top_k == 3
    assert set(option_fields()) >= {"mu", "layer"}  # the options come from the method registry


def test_query_strings_are_read_as_json_where_they_parse() -> None:
    assert query_parameters({"method": "gradcam", "top_k": "3", "targets": "[1, 2]", "mu": "0.5"}) == {
        "method": "gradcam", "top_k": 3, "targets": [1, 2], "mu": 0.5}


@pytest.mark.parametrize(("body", "error", "phrase"), [
    ([1, 2], RequestError, "JSON object"),
    ({"parameters": {}}, RequestError, "instances"),
    ({"instances": []}, RequestError, "instances"),
    ({"instances": ["x"] * 17}, RequestError, "at most 16"),
    ({"instances": ["%%%"]}, RequestError, "base64"),
    ({"instances": [{"b64": 3}]}, RequestError, "b64"),
    ({"instances": [3]}, RequestError, "instance"),
    ({"instances": [[[1, 2]]]}, RequestError, "(H, W, 3)"),
    ({"instances": [[[[1, 2, 3]], [[1, 2]]]]}, RequestError, "rectangular"),
    ({"instances": [[[[1.5, 2, 3]]]]}, RequestError, "integers"),
    ({"instances": [base64.b64encode(b"hello").decode()]}, ImageError, "cannot decode"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": []}, RequestError, "parameters"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"method": "nope"}}, RequestError, "unknown method"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"map": "jpeg"}}, RequestError, "map"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"target": 1000}}, TargetError, "out of range"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"target": True}}, RequestError, "class id"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"targets": [1, 1]}}, RequestError, "repeat"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"target": 1, "targets": [2]}}, RequestError, "not both"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"target": 1, "top_k": 2}}, RequestError, "not both"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"top_k": 0}}, RequestError, "top_k"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"max_seconds": -1}}, RequestError, "max_seconds"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"mu": "x"}}, RequestError, "mu must be"),
    ({"instances": [[[[0, 0, 0]]]], "parameters": {"colour": 1}}, RequestError, "unknown method options"),
    (b"{not json", RequestError, "not valid JSON"),
])
def test_bad_requests_are_one_line(body: object, error: type[SiseError], phrase: str) -> None:
    with pytest.raises(error) as caught:
        parse(body)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


def test_the_pixel_budget_holds_for_every_form() -> None:
    big = np.zeros((3, 4, 3), np.uint8)
    with pytest.raises(ImageError, match="limit"):
        parse_request({"instances": [big.tolist()]}, CLASSES, 11)
    assert parse_request({"instances": [big.tolist()]}, CLASSES, 12).images[0].shape == (3, 4, 3)
