"""The external data of an ONNX model: where its tensors' weights live, whether those
files may be read, and the model with their bytes moved inside it.

The references are read straight from the protobuf (no `onnx` package on the explain
path) and checked: from a path, every location must be a relative path that stays
inside the model's directory once symbolic links are resolved; a model given as bytes
may not reference external files at all (onnxruntime would look for them in the working
directory). onnxruntime 1.31 and onnx 1.23 refuse escaping paths too; this check gives
the same answer on every version, with a message that names the tensor. The external
data files are read into memory, never memory-mapped: truncating the weights file after
the session was made would kill the next call with SIGBUS.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .files import read_bounded, read_model_file
from .protobuf import LENGTH, VARINT, MalformedModel, encoded_length_field, fields, fields_with_spans, message_fields

# Field numbers of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5, ...).
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
FUNCTION_NODE = 7
NODE_ATTRIBUTE = 5
ATTRIBUTE_TENSOR, ATTRIBUTE_GRAPH, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 9, 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2

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

# All the external data files of one model together (they are read into memory).
MAX_EXTERNAL_DATA_BYTES = 32 * 2**30


def external_data_locations(data: bytes | memoryview) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor stored as external data, in the graph,
    its sparse initializers, node attributes, subgraphs and functions."""
    with memoryview(data) as view:
        return _external_data_locations(view)


def _string_entry(buf: memoryview, start: int, end: int) -> dict[int, str]:
    """The key and value of the StringStringEntryProto in buf[start:end], by field number."""
    return {k: bytes(buf[p:q]).decode("utf-8", "replace")
            for k, p, q in message_fields(buf, start, end, (ENTRY_KEY, ENTRY_VALUE))}


def _external_data_locations(buf: memoryview) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def tensor(a: int, b: int) -> None:
        name, location, external = "", None, False
        for number, wire, x, y in fields(buf, a, b):
            if number == TENSOR_NAME and wire == LENGTH:
                name = bytes(buf[x:y]).decode("utf-8", "replace")
            elif number == TENSOR_DATA_LOCATION and wire == VARINT:
                external = x == 1
            elif number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
                entry = _string_entry(buf, x, y)
                if entry.get(ENTRY_KEY) == "location":
                    location = entry.get(ENTRY_VALUE, "")
        if external or location is not None:
            found.append((name, location or ""))

    def sparse(a: int, b: int) -> None:
        for _, x, y in message_fields(buf, a, b, (SPARSE_VALUES, SPARSE_INDICES)):
            tensor(x, y)

    def nodes(a: int, b: int, node_field: int) -> None:
        for _, x, y in message_fields(buf, a, b, (node_field,)):
            for _, p, q in message_fields(buf, x, y, (NODE_ATTRIBUTE,)):
                attribute(p, q)

    def attribute(a: int, b: int) -> None:
        for number, x, y in message_fields(buf, a, b, (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPH,
                                                       ATTRIBUTE_GRAPHS, ATTRIBUTE_SPARSE_TENSOR,
                                                       ATTRIBUTE_SPARSE_TENSORS)):
            if number in (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS):
                tensor(x, y)
            elif number in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                graph(x, y)
            else:
                sparse(x, y)

    def graph(a: int, b: int) -> None:
        for number, x, y in message_fields(buf, a, b, (GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER)):
            (tensor if number == GRAPH_INITIALIZER else sparse)(x, y)
        nodes(a, b, GRAPH_NODE)

    for number, a, b in message_fields(buf, 0, len(buf), (MODEL_GRAPH, MODEL_FUNCTIONS)):
        if number == MODEL_GRAPH:
            graph(a, b)
        else:
            nodes(a, b, FUNCTION_NODE)
    return found


def _malformed(name: str, exc: BaseException) -> ModelError:
    return ModelError(f"{name} is not a loadable ONNX model (malformed protobuf: {exc or 'nested too deeply'})")


def external_data_files(data: bytes, path: Path | None, name: str) -> dict[str, Path]:
    """The file of each distinct external-data location of the model in `data` (read
    from `path`, or given as bytes: None), each checked to stay beside the model."""
    try:
        locations = external_data_locations(data)
    except (MalformedModel, RecursionError) as exc:
        raise _malformed(name, exc) from None
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


def check_external_data(source: Path | bytes, name: str) -> None:
    """Refuse external-data locations that leave the model's directory (or any, for bytes)."""
    data = source if isinstance(source, bytes) else read_model_file(source, name)
    external_data_files(data, None if isinstance(source, bytes) else source, name)


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


def inlined_external_data(data: bytes, external: dict[str, bytes], name: str) -> bytes:
    """The model in `data` with every external tensor's bytes moved into its raw_data
    (`external`: location -> file contents), so that onnxruntime reads no file at all:
    its in-memory external files do not reach the initializers of subgraphs."""
    with memoryview(data) as view:
        try:
            return _inlined(view, 0, len(view), "model", external, name)
        except (MalformedModel, RecursionError) as exc:
            raise _malformed(name, exc) from None


def _inlined(buf: memoryview, start: int, end: int, kind: str, external: dict[str, bytes], name: str) -> bytes:
    if kind == "tensor":
        return _inlined_tensor(buf, start, end, external, name)
    children = CHILDREN[kind]
    out = []
    for number, wire, (field_start, value_start), field_end in fields_with_spans(buf, start, end):
        if wire == LENGTH and number in children:
            out.append(encoded_length_field(
                number, _inlined(buf, value_start, field_end, children[number], external, name)))
        else:
            out.append(buf[field_start:field_end])
    return b"".join(out)


def _inlined_tensor(buf: memoryview, start: int, end: int, external: dict[str, bytes], name: str) -> bytes:
    entries: dict[str, str] = {}
    kept = []
    external_tensor = False
    for number, wire, a, b in fields_with_spans(buf, start, end):
        if number == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            entry = _string_entry(buf, a[1], b)
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
    return b"".join(kept) + encoded_length_field(TENSOR_RAW_DATA, contents[offset:offset + length])
