"""The hand-written protobuf wire format: fields and their spans read back from what
the writer encodes, and bytes that are no message refused with MalformedModel."""

from __future__ import annotations

import pytest

from onnx_sise.model.protobuf import (
    FIXED32,
    FIXED64,
    LENGTH,
    VARINT,
    MalformedModel,
    encoded_length_field,
    fields,
    fields_with_spans,
    message_fields,
)


def test_a_length_field_reads_back_with_its_span() -> None:
    short, long = encoded_length_field(5, b"abc"), encoded_length_field(1, b"x" * 300)
    buf = memoryview(short + long)
    assert list(fields_with_spans(buf, 0, len(buf))) == [(5, LENGTH, (0, 2), 5), (1, LENGTH, (5, 8), 308)]
    assert list(message_fields(buf, 0, len(buf), (1,))) == [(1, 8, 308)]
    assert bytes(buf[8:308]) == b"x" * 300


def test_fixed_fields_are_skipped_and_varints_give_their_value() -> None:
    varint = bytes([1 << 3 | VARINT, 0xAC, 0x02])  # 300
    fixed64 = bytes([2 << 3 | FIXED64]) + bytes(8)
    fixed32 = bytes([3 << 3 | FIXED32]) + bytes(4)
    buf = memoryview(varint + fixed64 + fixed32 + encoded_length_field(4, b"z"))
    assert [number for number, *_ in fields_with_spans(buf, 0, len(buf))] == [1, 2, 3, 4]
    assert list(fields(buf, 0, len(buf))) == [(1, VARINT, 300, 3), (4, LENGTH, 19, 20)]


@pytest.mark.parametrize(("data", "message"), [
    (b"\x80", "truncated varint"),
    (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "truncated varint"),
    (b"\x0a\x05ab", "field runs past the end"),
    (b"\x11\x00\x00", "field runs past the end"),
    (b"\x0b", "wire type 3"),
])
def test_bad_input_bytes_that_are_no_message(data: bytes, message: str) -> None:
    with pytest.raises(MalformedModel, match=message):
        list(fields_with_spans(memoryview(data), 0, len(data)))
