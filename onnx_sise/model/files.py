"""Opening an ONNX model in onnxruntime safely, from a path or from bytes.

The model file is read once, without blocking and only if it is a regular file, into
memory (never memory-mapped: a file truncated while it is read would kill the process
with SIGBUS), and onnxruntime gets those very bytes. Its external-data references are
read straight from the protobuf (no `onnx` package on the explain path) and checked:
from a path, every location must be a relative path that stays inside the model's
directory once symbolic links are resolved; a model given as bytes may not reference
external files at all (onnxruntime would look for them in the working directory).
onnxruntime 1.31 and onnx 1.23 refuse escaping paths too; this check gives the same
answer on every version, with a message that names the tensor. The external data files
are read into memory too and handed to onnxruntime, which copies them into the session:
left to itself it memory-maps them, and truncating the weights file after the session
was made would kill the next call with SIGBUS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ..errors import ModelError
from ..files.reading import read_regular

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

# protobuf's own limit on one serialized message: a larger model file is not ONNX.
MAX_MODEL_BYTES = 2**31 - 1
# All the external data files of one model together (they are read into memory).
MAX_EXTERNAL_DATA_BYTES = 32 * 2**30
# onnxruntime's FATAL: its own log lines would add to the one-line error.
QUIET_LOG_SEVERITY = 4
# What onnxruntime raises: its own exception types (none derives from another) and RuntimeError.
RUNTIME_ERRORS = (RuntimeError, *(kind for kind in vars(ort_state).values()
                                  if isinstance(kind, type) and issubclass(kind, Exception)))

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
    """(field number, wire type, start, end) of each varint and length-delimited field of
    the message in buf[start:end]: a varint's value and end, or the value's span."""
    for number, wire, (_, value), field_end in _fields_with_spans(buf, start, end):
        if wire in (VARINT, LENGTH):
            yield number, wire, value, field_end


def _message_fields(buf: memoryview, start: int, end: int, wanted: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    for number, wire, a, b in _fields(buf, start, end):
        if wire == LENGTH and number in wanted:
            yield number, a, b


def external_data_locations(data: bytes | memoryview) -> list[tuple[str, str]]:
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


def read_model_file(path: Path, name: str) -> bytes:
    """The bytes of the model file at `path` (`name` in messages), refused in one line if
    it is missing, not a regular file, empty, too large or changed while it was read."""
    data = read_bounded(path, name, "model", MAX_MODEL_BYTES, missing=f"model file not found: {name}")
    if not data:
        raise ModelError(f"{name} is empty (0 bytes): not an ONNX model")
    return data


def read_bounded(path: Path, name: str, kind: str, limit: int, missing: str) -> bytes:
    """read_regular with the model's messages: `missing` for a path that does not exist."""
    try:
        return read_regular(path, kind, ModelError, limit, name=name)
    except FileNotFoundError:
        raise ModelError(missing) from None
    except IsADirectoryError:
        raise ModelError(f"{name} is not a file (a directory)") from None


def external_data_files(data: bytes, path: Path | None, name: str) -> dict[str, Path]:
    """The file of each distinct external-data location of the model in `data` (read
    from `path`, or given as bytes: None), each checked to stay beside the model."""
    try:
        locations = external_data_locations(data)
    except (MalformedModel, RecursionError) as exc:
        raise ModelError(f"{name} is not a loadable ONNX model (malformed protobuf: {exc or 'nested too deeply'})") from None
    if not locations:
        return {}
    tensor, location = locations[0]
    if path is None:
        raise ModelError(f"{name} stores tensor {tensor!r} as external data ({location!r}): a model given as bytes "
                         "cannot reference files; load it from its path")
    folder = path.resolve().parent
    files: dict[str, Path] = {}
    for tensor, location in locations:
        candidate = Path(location)
        inside = bool(location) and not candidate.is_absolute() and (folder / candidate).resolve().is_relative_to(folder)
        if not inside:
            raise ModelError(f"{name}: external data of tensor {tensor!r} points outside the model's directory "
                             f"({location!r}): refused; keep the weights file beside the model")
        files.setdefault(location, folder / candidate)
    return files


def model_files_of(path: Path) -> list[Path]:
    """The model file and the external-data files it names: the files a run reads as the
    model, which no output may replace. A model that cannot be read names just itself
    (loading it is refused later, with its own message)."""
    try:
        return [path, *external_data_files(read_model_file(path, str(path)), path, str(path)).values()]
    except (ModelError, OSError, ValueError):
        return [path]


def read_external_data(files: dict[str, Path], name: str) -> dict[str, bytes]:
    """The contents of each external data file (location -> bytes), bounded together
    by MAX_EXTERNAL_DATA_BYTES."""
    contents: dict[str, bytes] = {}
    left = MAX_EXTERNAL_DATA_BYTES
    for location, file in files.items():
        contents[location] = read_bounded(
            file, f"the external data file {location!r} of {name}", "weights file", left,
            missing=f"{name}: its external data file {location!r} is missing: keep the weights beside the model")
        left -= len(contents[location])
    return contents


# Which field of which message holds which kind of message, on the paths from a model
# to its tensors (onnx.proto); everything else is copied as it is.
CHILDREN = {
    "model": {MODEL_GRAPH: "graph", MODEL_FUNCTIONS: "function"},
    "graph": {GRAPH_NODE: "node", GRAPH_INITIALIZER: "tensor", GRAPH_SPARSE_INITIALIZER: "sparse"},
    "function": {FUNCTION_NODE: "node"},
    "node": {NODE_ATTRIBUTE: "attribute"},
    "attribute": {ATTRIBUTE_TENSOR: "tensor", ATTRIBUTE_TENSORS: "tensor", ATTRIBUTE_GRAPH: "graph",
                  ATTRIBUTE_GRAPHS: "graph", ATTRIBUTE_SPARSE_TENSOR: "sparse", ATTRIBUTE_SPARSE_TENSORS: "sparse"},
    "sparse": {SPARSE_VALUES: "tensor", SPARSE_INDICES: "tensor"},
}
TENSOR_RAW_DATA = 9


def _encoded_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encoded_varint(number << 3 | LENGTH) + _encoded_varint(len(payload)) + payload


def inlined_external_data(data: bytes, external: dict[str, bytes], name: str) -> bytes:
    """The model in `data` with every external tensor's bytes moved into its raw_data
    (`external`: location -> file contents), so that onnxruntime reads no file at all:
    its in-memory external files do not reach the initializers of subgraphs."""
    with memoryview(data) as view:
        try:
            return _inlined(view, 0, len(view), "model", external, name)
        except (MalformedModel, RecursionError) as exc:
            raise ModelError(f"{name} is not a loadable ONNX model (malformed protobuf: {exc or 'nested too deeply'})"
                             ) from None


def _inlined(buf: memoryview, start: int, end: int, kind: str, external: dict[str, bytes], name: str) -> bytes:
    if kind == "tensor":
        return _inlined_tensor(buf, start, end, external, name)
    children = CHILDREN[kind]
    out = []
    for number, wire, (field_start, value_start), field_end in _fields_with_spans(buf, start, end):
        if wire == LENGTH and number in children:
            out.append(_length_field(number, _inlined(buf, value_start, field_end, children[number], external, name)))
        else:
            out.append(buf[field_start:field_end])
    return b"".join(out)


def _inlined_tensor(buf: memoryview, start: int, end: int, external: dict[str, bytes], name: str) -> bytes:
    entries: dict[str, str] = {}
    kept = []
    external_tensor = False
    for number, wire, a, b in _fields_with_spans(buf, start, end):
        if number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            entry = {k: bytes(buf[p:q]).decode("utf-8", "replace")
                     for k, p, q in _message_fields(buf, a[1], b, (ENTRY_KEY, ENTRY_VALUE))}
            entries[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
        elif number == TENSOR_DATA_LOCATION and wire == VARINT:
            external_tensor = a[1] == 1
        else:
            kept.append(buf[a[0]:b])
    if not external_tensor and "location" not in entries:
        return bytes(buf[start:end])
    contents = external.get(entries.get("location", ""), b"")
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else len(contents) - offset
    except ValueError:
        raise ModelError(f"{name}: an external tensor has a non-numeric offset or length") from None
    if offset < 0 or length < 0 or offset + length > len(contents):
        raise ModelError(f"{name}: an external tensor lies outside its weights file "
                         f"({entries.get('location', '')!r}, {len(contents)} bytes): the weights do not match the model")
    return b"".join(kept) + _length_field(TENSOR_RAW_DATA, contents[offset:offset + length])


def _fields_with_spans(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, tuple[int, int], int]]:
    """(number, wire type, (field start, value start or varint value), field end) of each field."""
    i = start
    while i < end:
        key, after_key = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, after = _varint(buf, after_key, end)
            yield number, wire, (i, value), after
        elif wire in (FIXED64, FIXED32):
            after = after_key + (8 if wire == FIXED64 else 4)
            if after > end:
                raise MalformedModel("field runs past the end")
            yield number, wire, (i, after_key), after
        elif wire == LENGTH:
            length, value_start = _varint(buf, after_key, end)
            after = value_start + length
            if after > end:
                raise MalformedModel("field runs past the end")
            yield number, wire, (i, value_start), after
        else:
            raise MalformedModel(f"wire type {wire}")
        i = after


def check_external_data(source: Path | bytes, name: str) -> None:
    """Refuse external-data locations that leave the model's directory (or any, for bytes)."""
    data = source if isinstance(source, bytes) else read_model_file(source, name)
    external_data_files(data, None if isinstance(source, bytes) else source, name)


def copied_options(theirs: ort.SessionOptions) -> ort.SessionOptions:
    """A fresh SessionOptions with the threading, optimisation and memory settings of
    `theirs` (config entries cannot be listed, so they are not copied)."""
    options = ort.SessionOptions()
    for name in SHARED_OPTIONS:
        setattr(options, name, getattr(theirs, name))
    return options


def copied_session_options(session: ort.InferenceSession) -> ort.SessionOptions:
    """A fresh SessionOptions with `session`'s threading, optimisation and memory settings."""
    return copied_options(session.get_session_options())


def providers_of(session: ort.InferenceSession) -> list[tuple[str, dict[str, str]]]:
    """`session`'s execution providers in order, each with its options."""
    options = session.get_provider_options()
    return [(name, dict(options.get(name, {}))) for name in session.get_providers()]


def open_session(source: Path | bytes, name: str, options: ort.SessionOptions,
                 providers: Sequence[str | tuple[str, dict]]) -> ort.InferenceSession:
    """An onnxruntime session of the model at `source` (a path or the file's bytes) that
    owns all its weights: the file and its external data are read here, checked, and
    handed to onnxruntime from memory: inlined into the model's bytes, or for a model of
    more than 2 GiB in a copy of `options` (so that `options` can serve another model)."""
    data = source if isinstance(source, bytes) else read_model_file(source, name)
    files = external_data_files(data, None if isinstance(source, bytes) else source, name)
    if files:
        external = read_external_data(files, name)
        if len(data) + sum(len(contents) for contents in external.values()) <= MAX_MODEL_BYTES:
            data = inlined_external_data(data, external, name)
        else:  # too large for one protobuf: onnxruntime's in-memory files (not read by subgraphs)
            options = copied_options(options)
            options.add_external_initializers_from_files_in_memory(
                list(external), list(external.values()), [len(contents) for contents in external.values()])
    ort.set_default_logger_severity(QUIET_LOG_SEVERITY)
    try:
        return ort.InferenceSession(data, options, providers=list(providers))
    except Exception as exc:  # onnxruntime's own types, and ValueError for its providers
        raise ModelError(f"{name} is not a loadable ONNX model ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
