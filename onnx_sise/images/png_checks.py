"""A PNG checked as libpng checks it, before libpng sees it: libpng prints its own
warnings and errors on stderr (past OpenCV's log level), which would add lines to the
CLI's one-line error, so every defect it reports is refused here first.

Checked: the chunk structure and every CRC, the IHDR fields (headers.png_ihdr),
the palette, and the compressed image data, inflated here in bounded steps: its zlib
stream, its size, every row's filter type, nothing after it. Ancillary chunks that do
not change the decoded pixels (text, colour profiles, transparency, APNG frames, ...)
are dropped rather than checked, since libpng complains about many malformed ones;
the first valid eXIf is kept (OpenCV applies its orientation).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .headers import PNG_SIGNATURE, HeaderError, PngHeader, png_ihdr

MAX_EXIF_BYTES = 1 << 20
INFLATE_STEP = 1 << 20  # bytes of image data inflated at a time
MAX_FILTER_TYPE = 4  # None, Sub, Up, Average, Paeth
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@dataclass
class _Chunks:
    """Where the chunks that are kept lie, as (start, end) byte ranges of whole chunks."""

    header: tuple[int, int] = (8, 33)
    palette: tuple[int, int] | None = None
    exif: tuple[int, int] | None = None
    image_data: list[tuple[int, int]] = field(default_factory=list)
    end: tuple[int, int] | None = None


def checked_png(data: np.ndarray) -> np.ndarray | bytes:
    """`data` (a PNG, 1-D uint8) itself, or rebuilt without the chunks dropped;
    HeaderError naming the first defect libpng would report."""
    raw = memoryview(data)
    header = png_ihdr(raw)
    chunks = _chunks(raw, header)
    _check_image_data([raw[start + 8:end - 4] for start, end in chunks.image_data], header)
    kept = [chunks.header, chunks.palette, chunks.exif, *chunks.image_data, chunks.end]
    spans = [span for span in kept if span is not None]
    if all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(raw):
        return data
    return b"".join([PNG_SIGNATURE, *(raw[start:end] for start, end in spans)])


def _chunks(raw: memoryview, header: PngHeader) -> _Chunks:
    chunks, i = _Chunks(), 8
    while chunks.end is None:
        if i + 12 > len(raw):
            raise HeaderError("the PNG is truncated: it has no IEND chunk")
        length, kind = int.from_bytes(raw[i:i + 4], "big"), bytes(raw[i + 4:i + 8])
        end = i + 12 + length
        name = kind.decode("latin-1")
        if not kind.isalpha() or not kind.isascii():
            raise HeaderError(f"the PNG is corrupt: invalid chunk type {name!r}")
        if end > len(raw):
            raise HeaderError(f"the PNG is truncated inside its {name!r} chunk")
        if zlib.crc32(raw[i + 4:end - 4]) != int.from_bytes(raw[end - 4:end], "big"):
            raise HeaderError(f"the PNG chunk {name!r} fails its CRC check: the file is corrupt")
        _place(chunks, kind, (i, end), raw, header)
        i = end
    if header.colour_type == 3 and chunks.palette is None:
        raise HeaderError("the PNG is a palette image without a PLTE chunk")
    if not chunks.image_data:
        raise HeaderError("the PNG holds no image data (no IDAT chunk)")
    return chunks


def _place(chunks: _Chunks, kind: bytes, span: tuple[int, int], raw: memoryview, header: PngHeader) -> None:
    """Record a chunk that is kept, refuse one libpng would refuse; others are dropped."""
    payload = raw[span[0] + 8:span[1] - 4]
    after_image_data = bool(chunks.image_data) and chunks.image_data[-1][1] != span[0]
    if kind == b"IHDR" and span[0] != 8 or kind in (b"IHDR", b"PLTE", b"IDAT") and after_image_data:
        raise HeaderError(f"the PNG is corrupt: chunk {kind.decode()!r} is out of place")
    if kind == b"IDAT":
        chunks.image_data.append(span)
    elif kind == b"IEND":
        chunks.end = span
    elif kind == b"PLTE":
        _place_palette(chunks, span, len(payload), header)
    elif kind == b"eXIf" and chunks.exif is None and len(payload) <= MAX_EXIF_BYTES and bytes(payload[:4]) in (
            b"II*\0", b"MM\0*"):  # libpng ignores (after a warning) a repeated or invalid one: dropped
        chunks.exif = span
    elif kind[0] & 0x20 == 0 and kind != b"IHDR":  # an unknown critical chunk
        raise HeaderError(f"the PNG has an unknown critical chunk {kind.decode()!r}")


def _place_palette(chunks: _Chunks, span: tuple[int, int], length: int, header: PngHeader) -> None:
    if chunks.palette is not None or chunks.image_data or length % 3 or not 3 <= length <= 768:
        raise HeaderError("the PNG's PLTE chunk is invalid (out of place, repeated, or not 1 to 256 colours)")
    if header.colour_type == 3:  # elsewhere a suggestion for displays, or (in grayscale) an error libpng ignores
        chunks.palette = span


def _rows(header: PngHeader) -> list[tuple[int, int]]:
    """(rows, bytes per row with its filter byte) of each non-empty pass of the image."""
    bits = header.bit_depth * _CHANNELS[header.colour_type]
    passes = _ADAM7 if header.interlaced else ((0, 0, 1, 1),)
    rows = []
    for x0, y0, dx, dy in passes:
        columns = max(0, -(-(header.width - x0) // dx))
        count = max(0, -(-(header.height - y0) // dy))
        if columns and count:
            rows.append((count, 1 + -(-(columns * bits) // 8)))
    return rows


def _regions(header: PngHeader) -> tuple[list[tuple[int, int, int]], int]:
    """(start, end, bytes per row) of each pass in the inflated stream, and its size."""
    regions, size = [], 0
    for count, row_bytes in _rows(header):
        regions.append((size, size + count * row_bytes, row_bytes))
        size += count * row_bytes
    return regions, size


def _inflated(payloads: list[memoryview]) -> Iterator[bytes]:
    """The IDAT stream inflated INFLATE_STEP bytes at a time; HeaderError if it does not
    end, or if anything follows its end."""
    inflater = zlib.decompressobj(wbits=0)  # the window size its zlib header says, as libpng
    for payload in payloads:
        if inflater.eof:
            if len(payload):
                raise HeaderError("the PNG has extra data after its compressed image")
            continue
        out = inflater.decompress(payload, INFLATE_STEP)
        yield out
        while inflater.unconsumed_tail or (len(out) == INFLATE_STEP and not inflater.eof):
            out = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
            yield out
        if inflater.unused_data:
            raise HeaderError("the PNG has extra data after its compressed image")
    if not inflater.eof:
        raise HeaderError("the PNG's compressed image data is truncated")


def _check_image_data(payloads: list[memoryview], header: PngHeader) -> None:
    """The inflated image data: exactly the image's size, a valid filter type on every row."""
    regions, size = _regions(header)
    produced = 0
    try:
        for out in _inflated(payloads):
            _check_filters(out, produced, regions)
            produced += len(out)
            if produced > size:
                raise HeaderError("the PNG holds more image data than its size")
    except zlib.error as exc:
        raise HeaderError(f"the PNG's compressed image data is corrupt ({exc})") from None
    if produced != size:
        raise HeaderError("the PNG holds less image data than its size")


def _check_filters(out: bytes, at: int, regions: list[tuple[int, int, int]]) -> None:
    """Every row's first byte (its filter type) that lies in out = stream[at:at + len(out)]."""
    view = np.frombuffer(out, np.uint8)
    for start, end, row_bytes in regions:
        low, high = max(start, at), min(end, at + len(out))
        first = start + -(-(low - start) // row_bytes) * row_bytes
        if first < high and view[first - at:high - at:row_bytes].max() > MAX_FILTER_TYPE:
            raise HeaderError("the PNG's image data has an invalid row filter: the file is corrupt")
