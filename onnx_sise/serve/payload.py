"""What a served request asks for, parsed and checked before any work is queued.

A V1 body is `{"instances": [...], "parameters": {...}}`. An instance is one photo:

- `{"image_bytes": {"b64": "..."}}` (KServe's image convention) or `{"b64": "..."}`;
- a bare base64 string;
- nested lists (H, W, 3) of integers in [0, 255] (RGB);
- a raw image body (any non-JSON content type, e.g. `image/png`): one instance, the
  parameters then come from the URL's query string.

Encoded photos (PNG, JPEG, ...) are decoded here, header first, within the explainer's
pixel budget (images/decode.py). `parameters` holds `method` (default sise), `target`
(one class id) or `targets` (a list) or `top_k`, `max_seconds`, `map` ("png": a base64
16-bit grey PNG, "array": the float32 map as nested lists, or "both") and the method's
options, checked against the same option records as the command line and the API
(methods/options.py, methods.checked). Anything else is a RequestError (one line).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import RequestError, SiseError, TargetError
from ..images.decode import decode_rgb
from ..images.sources import checked_rgb
from ..methods import METHODS, checked

MAP_FORMATS = ("png", "array", "both")
RESERVED = ("method", "target", "targets", "top_k", "max_seconds", "map")
MAX_INSTANCES = 16


@dataclass(frozen=True)
class ExplainRequest:
    """One request's photos (each (H, W, 3) uint8 RGB) and what to do with them."""

    images: list[np.ndarray]
    method: str = "sise"
    targets: list[int] | None = None
    top_k: int | None = None
    max_seconds: float | None = None
    map_format: str = "png"
    options: dict[str, object] = field(default_factory=dict)


def parse_request(body: object, num_classes: int, max_pixels: int, max_instances: int = MAX_INSTANCES,
                  query: Mapping[str, object] | None = None) -> ExplainRequest:
    """A V1 body (a dict), or the raw bytes of one photo (with parameters from `query`),
    as an ExplainRequest. Bytes that open with `{` are read as JSON (a JSON body sent
    without its content type, as `curl -d` does)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        if not data.lstrip()[:1] == b"{":
            return _request([_decoded(data, "the request body", max_pixels)], dict(query or {}), num_classes)
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            raise RequestError("the body opens with { but is not valid JSON") from None
    if not isinstance(body, Mapping):
        raise RequestError(f"the body must be a JSON object with \"instances\", got {type(body).__name__}")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError("the body needs \"instances\": a non-empty list of images "
                           "({\"image_bytes\": {\"b64\": ...}}, {\"b64\": ...}, a base64 string or RGB lists)")
    if len(instances) > max_instances:
        raise RequestError(f"{len(instances)} instances in one request, at most {max_instances}: split it")
    parameters = body.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise RequestError(f"\"parameters\" must be a JSON object, got {type(parameters).__name__}")
    images = [instance_rgb(item, f"instance {i}", max_pixels) for i, item in enumerate(instances)]
    return _request(images, dict(parameters), num_classes)


def instance_rgb(item: object, name: str, max_pixels: int) -> np.ndarray:
    """One instance (see the module docstring) as (H, W, 3) uint8 RGB."""
    if isinstance(item, Mapping):
        inner = item.get("image_bytes", item)
        encoded = inner.get("b64") if isinstance(inner, Mapping) else None
        if not isinstance(encoded, str):
            raise RequestError(f"{name}: an object instance needs \"b64\" or \"image_bytes\": {{\"b64\": ...}} "
                               "with a base64 string")
        return _decoded(_base64(encoded, name), name, max_pixels)
    if isinstance(item, str):
        return _decoded(_base64(item, name), name, max_pixels)
    if isinstance(item, bytes):  # V2 BYTES over gRPC or binary data: the encoded photo itself
        return _decoded(item, name, max_pixels)
    if isinstance(item, list):
        return _rgb_lists(item, name, max_pixels)
    raise RequestError(f"{name}: an instance is an object with b64, a base64 string or (H, W, 3) lists, "
                       f"got {type(item).__name__}")


def query_parameters(query: Mapping[str, str]) -> dict[str, object]:
    """A URL's query string as parameters: each value read as JSON when it parses
    (`top_k=3`, `targets=[1,2]`, `mu=0.5`), else kept as text (`method=gradcam`)."""
    found: dict[str, object] = {}
    for key, text in query.items():
        try:
            found[key] = json.loads(text)
        except ValueError:
            found[key] = text
    return found


def _request(images: list[np.ndarray], parameters: dict[str, object], num_classes: int) -> ExplainRequest:
    method = parameters.pop("method", "sise")
    if not isinstance(method, str) or method not in METHODS:
        raise RequestError(f"unknown method {method!r:.60}: one of {', '.join(METHODS)}")
    map_format = parameters.pop("map", "png")
    if map_format not in MAP_FORMATS:
        raise RequestError(f"\"map\" must be one of {', '.join(MAP_FORMATS)}, got {map_format!r:.40}")
    targets = _targets(parameters.pop("target", None), parameters.pop("targets", None), num_classes)
    top_k = parameters.pop("top_k", None)
    if top_k is not None:
        if targets is not None:
            raise RequestError("give target(s) or top_k, not both")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
            raise RequestError(f"top_k must be an integer in [1, {num_classes}], got {top_k!r:.40}")
    max_seconds = parameters.pop("max_seconds", None)
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, numbers.Real)
                                    or not (max_seconds > 0 and math.isfinite(max_seconds))):
        raise RequestError(f"max_seconds must be a positive number of seconds, got {max_seconds!r:.40}")
    try:
        checked(method, parameters)  # the CLI's and the API's option records
    except SiseError as exc:
        raise RequestError(str(exc)) from None
    return ExplainRequest(images, method, targets, top_k, max_seconds, map_format, parameters)


def _targets(target: object, targets: object, num_classes: int) -> list[int] | None:
    if target is not None and targets is not None:
        raise RequestError("give \"target\" or \"targets\", not both")
    chosen = [target] if target is not None else targets
    if chosen is None:
        return None
    if not isinstance(chosen, list) or not chosen:
        raise RequestError(f"targets must be a non-empty list of class ids, got {chosen!r:.40}")
    for t in chosen:
        if isinstance(t, bool) or not isinstance(t, int):
            raise RequestError(f"a target must be a class id (an integer), got {t!r:.40}")
        if not 0 <= t < num_classes:
            raise TargetError(f"class id {t} is out of range: this model has classes 0..{num_classes - 1}")
    if len(set(chosen)) != len(chosen):
        raise RequestError(f"target classes repeat: {chosen}")
    return chosen


def _base64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name}: not valid base64 (standard alphabet, padded)") from None


def _decoded(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    return decode_rgb(data, name, max_pixels)


def _rgb_lists(item: list, name: str, max_pixels: int) -> np.ndarray:
    try:
        array = np.array(item)
    except (ValueError, OverflowError):
        raise RequestError(f"{name}: RGB lists must be rectangular (H, W, 3)") from None
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype.kind not in "iu" or array.size == 0:
        raise RequestError(f"{name}: RGB lists must be (H, W, 3) integers, got shape {array.shape} of "
                           f"{array.dtype.name}")
    if array.min() < 0 or array.max() > 255:
        raise RequestError(f"{name}: RGB values must lie in [0, 255]")
    return checked_rgb(np.ascontiguousarray(array, dtype=np.uint8), max_pixels)
