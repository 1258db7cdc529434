"""Opening an ONNX model in onnxruntime safely, from a path or from bytes.

Before onnxruntime sees a model, its external-data references are read straight from
the protobuf (no `onnx` package on the explain path) and checked: from a path, every
location must be a relative path that stays inside the model's directory once symbolic
links are resolved; a model given as bytes may not reference external files at all
(onnxruntime would look for them in the working directory). onnxruntime 1.31 and onnx
1.23 refuse escaping paths too; this check gives the same answer on every version, with
a message that names the tensor.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnxruntime as ort

from .errors import ModelError

# Field numbers of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5, ...).
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
FUNCTION_NODE = 7
NODE_ATTRIBUTE = 5
ATTRIBUTE_TENSOR, ATTRIBUTE_GRAPH, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# SessionOptions fields an Explainer copies from a user's session; profiling and
# optimized_model_filepath are left out on purpose: they would write files.
SHARED_OPTIONS = ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "execution_order",
                  "graph_optimization_level", "enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse",
                  "use_deterministic_compute", "use_per_session_threads", "log_severity_level")


class MalformedModel(ValueError):
    """The bytes are not a protobuf message."""


def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= end or shift > 63:
            raise MalformedModel("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the message in buf[start:end];
    for a varint, start holds its value."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, i = _varint(buf, i, end)
            yield number, wire, value, i
        elif wire == FIXED64:
            i += 8
        elif wire == FIXED32:
            i += 4
        elif wire == LENGTH:
            length, i = _varint(buf, i, end)
            if i + length > end:
                raise MalformedModel("field runs past the end")
            yield number, wire, i, i + length
            i += length
        else:
            raise MalformedModel(f"wire type {wire}")
        if i > end:
            raise MalformedModel("field runs past the end")


def _message_fields(buf: memoryview, start: int, end: int, wanted: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    for number, wire, a, b in _fields(buf, start, end):
        if wire == LENGTH and number in wanted:
            yield number, a, b


def external_data_locations(data: bytes | memoryview | mmap.mmap) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor stored as external data, in the graph,
    its sparse initializers, node attributes, subgraphs and functions."""
    with memoryview(data) as view:
        return _external_data_locations(view)


def _external_data_locations(buf: memoryview) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def tensor(a: int, b: int) -> None:
        name, location, external = "", None, False
        for number, wire, x, y in _fields(buf, a, b):
            if number == TENSOR_NAME and wire == LENGTH:
                name = bytes(buf[x:y]).decode("utf-8", "replace")
            elif number == TENSOR_DATA_LOCATION and wire == VARINT:
                external = x == 1
            elif number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
                entry = {k: bytes(buf[p:q]).decode("utf-8", "replace")
                         for k, p, q in _message_fields(buf, x, y, (ENTRY_KEY, ENTRY_VALUE))}
                if entry.get(ENTRY_KEY) == "location":
                    location = entry.get(ENTRY_VALUE, "")
        if external or location is not None:
            found.append((name, location or ""))

    def sparse(a: int, b: int) -> None:
        for _, x, y in _message_fields(buf, a, b, (SPARSE_VALUES, SPARSE_INDICES)):
            tensor(x, y)

    def nodes(a: int, b: int, node_field: int) -> None:
        for _, x, y in _message_fields(buf, a, b, (node_field,)):
            for _, p, q in _message_fields(buf, x, y, (NODE_ATTRIBUTE,)):
                attribute(p, q)

    def attribute(a: int, b: int) -> None:
        for number, x, y in _message_fields(buf, a, b, (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPH,
                                                        ATTRIBUTE_GRAPHS, ATTRIBUTE_SPARSE_TENSOR,
                                                        ATTRIBUTE_SPARSE_TENSORS)):
            if number in (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS):
                tensor(x, y)
            elif number in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                graph(x, y)
            else:
                sparse(x, y)

    def graph(a: int, b: int) -> None:
        for number, x, y in _message_fields(buf, a, b, (GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER)):
            (tensor if number == GRAPH_INITIALIZER else sparse)(x, y)
        nodes(a, b, GRAPH_NODE)

    for number, a, b in _message_fields(buf, 0, len(buf), (MODEL_GRAPH, MODEL_FUNCTIONS)):
        if number == MODEL_GRAPH:
            graph(a, b)
        else:
            nodes(a, b, FUNCTION_NODE)
    return found


def check_external_data(source: Path | bytes, name: str) -> None:
    """Refuse external-data locations that leave the model's directory (or any, for bytes)."""
    try:
        if isinstance(source, bytes):
            locations = external_data_locations(source)
        else:
            with open(source, "rb") as handle:
                if os.fstat(handle.fileno()).st_size == 0:
                    raise ModelError(f"{name} is empty (0 bytes): not an ONNX model")
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    locations = external_data_locations(mapped)
    except (MalformedModel, RecursionError) as exc:
        raise ModelError(f"{name} is not a loadable ONNX model (malformed protobuf: {exc or 'nested too deeply'})") from None
    except OSError as exc:
        raise ModelError(f"cannot read {name}: {exc.strerror}") from None
    if not locations:
        return
    tensor, location = locations[0]
    if isinstance(source, bytes):
        raise ModelError(f"{name} stores tensor {tensor!r} as external data ({location!r}): a model given as bytes "
                         "cannot reference files; load it from its path")
    folder = source.resolve().parent
    for tensor, location in locations:
        candidate = Path(location)
        inside = not candidate.is_absolute() and (folder / candidate).resolve().is_relative_to(folder)
        if not location or not inside:
            raise ModelError(f"{name}: external data of tensor {tensor!r} points outside the model's directory "
                             f"({location!r}): refused; keep the weights file beside the model")


def copied_session_options(session: ort.InferenceSession) -> ort.SessionOptions:
    """A fresh SessionOptions with `session`'s threading, optimisation and memory settings."""
    theirs = session.get_session_options()
    options = ort.SessionOptions()
    for name in SHARED_OPTIONS:
        setattr(options, name, getattr(theirs, name))
    return options


def providers_of(session: ort.InferenceSession) -> list[tuple[str, dict[str, str]]]:
    """`session`'s execution providers in order, each with its options."""
    options = session.get_provider_options()
    return [(name, dict(options.get(name, {}))) for name in session.get_providers()]


def open_session(source: Path | bytes, name: str, options: ort.SessionOptions,
                 providers: Sequence[str | tuple[str, dict]]) -> ort.InferenceSession:
    """An onnxruntime session of the model at `source` (a path or the file's bytes),
    its external data checked first."""
    check_external_data(source, name)
    try:
        return ort.InferenceSession(source if isinstance(source, bytes) else str(source), options,
                                    providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelError(f"{name} is not a loadable ONNX model ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
