"""External data as a model file names it, read from hand-encoded protobuf: found,
checked to stay beside the model, and moved into the model's bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onnx_sise.errors import ModelError
from onnx_sise.model.external_data import (
    GRAPH_INITIALIZER,
    MODEL_GRAPH,
    TENSOR_DATA_LOCATION,
    TENSOR_EXTERNAL_DATA,
    TENSOR_NAME,
    TENSOR_RAW_DATA,
    check_external_data,
    external_data_files,
    external_data_locations,
    inlined_external_data,
    model_files_of,
)
from onnx_sise.model.protobuf import VARINT, encoded_length_field, fields, message_fields

WEIGHTS = bytes(range(16))


def entry(key: str, value: str) -> bytes:
    return encoded_length_field(TENSOR_EXTERNAL_DATA,
                                encoded_length_field(1, key.encode()) + encoded_length_field(2, value.encode()))


def model_bytes(location: str, offset: int = 4, length: int = 8) -> bytes:
    """A ModelProto whose graph has one initializer "w" stored as external data."""
    tensor = (encoded_length_field(TENSOR_NAME, b"w") + bytes([TENSOR_DATA_LOCATION << 3 | VARINT, 1])
              + entry("location", location) + entry("offset", str(offset)) + entry("length", str(length)))
    return encoded_length_field(MODEL_GRAPH, encoded_length_field(GRAPH_INITIALIZER, tensor))


def test_locations_of_external_initializers() -> None:
    assert external_data_locations(model_bytes("w.bin")) == [("w", "w.bin")]


def test_inlined_tensors_hold_their_bytes_and_name_no_file() -> None:
    inlined = memoryview(inlined_external_data(model_bytes("w.bin"), {"w.bin": WEIGHTS}, "m"))
    assert external_data_locations(inlined) == []
    ((_, a, b),) = message_fields(inlined, 0, len(inlined), (MODEL_GRAPH,))
    ((_, x, y),) = message_fields(inlined, a, b, (GRAPH_INITIALIZER,))
    tensor = {number: bytes(inlined[p:q]) for number, _, p, q in fields(inlined, x, y)}
    assert tensor == {TENSOR_NAME: b"w", TENSOR_RAW_DATA: WEIGHTS[4:12]}


def test_bad_input_external_tensor_outside_its_weights_file() -> None:
    with pytest.raises(ModelError, match="an external tensor lies outside its weights file"):
        inlined_external_data(model_bytes("w.bin", offset=12), {"w.bin": WEIGHTS}, "m")


def test_the_model_files_are_the_model_and_its_weights(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(model_bytes("w.bin"))
    assert model_files_of(model) == [model, tmp_path.resolve() / "w.bin"]
    assert model_files_of(tmp_path / "missing.onnx") == [tmp_path / "missing.onnx"]


@pytest.mark.parametrize("location", ["../w.bin", "/etc/passwd", ""])
def test_bad_input_external_data_outside_the_model_directory(tmp_path: Path, location: str) -> None:
    with pytest.raises(ModelError, match="points outside the model's directory"):
        external_data_files(model_bytes(location), tmp_path / "m.onnx", "m")


def test_bad_input_external_data_in_model_bytes() -> None:
    with pytest.raises(ModelError, match="a model given as bytes cannot reference files"):
        check_external_data(model_bytes("w.bin"), "the model bytes")


def test_bad_input_malformed_protobuf() -> None:
    with pytest.raises(ModelError, match=r"m is not a loadable ONNX model \(malformed protobuf: truncated varint\)"):
        external_data_files(b"\x80", None, "m")


def test_bad_input_external_data_check_of_a_model_file_that_is_not_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is not a regular file"):
        check_external_data(fifo, str(fifo))
