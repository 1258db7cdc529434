"""The protobuf wire format, read and written by hand: the fields of a serialized
message with their spans, and length-delimited fields encoded again. Nothing here
knows onnx.proto; callers name the fields they want by number."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


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


def fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each varint and length-delimited field of
    the message in buf[start:end]: a varint's value and end, or the value's span."""
    for number, wire, (_, value), field_end in fields_with_spans(buf, start, end):
        if wire in (VARINT, LENGTH):
            yield number, wire, value, field_end


def message_fields(buf: memoryview, start: int, end: int, wanted: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(field number, value start, value end) of each length-delimited field numbered in `wanted`."""
    for number, wire, a, b in fields(buf, start, end):
        if wire == LENGTH and number in wanted:
            yield number, a, b


def fields_with_spans(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, tuple[int, int], int]]:
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


def _encoded_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encoded_length_field(number: int, payload: bytes) -> bytes:
    """Field `number` holding `payload`, length-delimited, as it is serialized."""
    return _encoded_varint(number << 3 | LENGTH) + _encoded_varint(len(payload)) + payload
