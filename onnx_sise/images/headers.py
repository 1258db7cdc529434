"""What an encoded image says about itself before anything decodes it: its format, told
by its magic bytes, and every pixel area its headers make a decoder allocate.

Only the formats whose headers are read here are handed to OpenCV (ACCEPTED); every
other format cv2.imdecode knows (JPEG 2000, AVIF, Radiance HDR, PFM, Sun raster,
OpenEXR, ...) is refused by name. A header too short or inconsistent to say what it
declares is refused, never decoded: decode_rgb checks every Area against its pixel
budget before OpenCV allocates anything.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ACCEPTED = "PNG, JPEG, GIF, BMP, TIFF, WebP, PNM/PAM"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# libpng refuses larger sides itself (PNG_USER_WIDTH_MAX / HEIGHT_MAX), printing on stderr
PNG_MAX_SIDE = 1_000_000
MAX_TIFF_PAGES = 1024
MAX_TIFF_ENTRIES = 4096  # libtiff's own sanity limit on a BigTIFF directory
MAX_TIFF_ARRAY = 64  # values read from one per-sample tag (BitsPerSample, SampleFormat)
MAX_TEXT_HEADER = 1 << 16  # bytes of a PNM/PAM header
MAX_SAMPLE_BITS = 16


class HeaderError(ValueError):
    """Why an encoded image is refused before decoding (one line, without its name)."""


@dataclass(frozen=True)
class Area:
    """A pixel area a decoder sizes a buffer by: the image, a frame, a page or a tile."""

    height: int
    width: int
    where: str = ""  # "" for the image itself, else e.g. " in TIFF page 2"

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Header:
    format: str
    areas: tuple[Area, ...]


def read_header(data: np.ndarray) -> Header:
    """The format of the encoded image `data` (1-D uint8) and the areas it declares;
    HeaderError when the format is not accepted or its header cannot be trusted."""
    head = data[:16].tobytes()
    for name, matches, reader in _ACCEPTED_FORMATS:
        if matches(head):
            return Header(name, tuple(reader(memoryview(data))))
    for name, matches in _REFUSED_FORMATS:
        if matches(head):
            raise HeaderError(f"{name} is not an accepted format ({ACCEPTED}): convert it to PNG or JPEG")
    raise HeaderError(f"it is not an image in an accepted format ({ACCEPTED})")


def _unpack(layout: str, raw: memoryview, offset: int, what: str) -> tuple:
    if offset < 0 or offset + struct.calcsize(layout) > len(raw):
        raise HeaderError(f"the {what} header is truncated")
    return struct.unpack_from(layout, raw, offset)


def _nonempty(height: int, width: int, what: str, where: str = "") -> Area:
    if height < 1 or width < 1:
        raise HeaderError(f"the {what} header declares an empty image ({width} x {height}){where}")
    return Area(height, width, where)


# --- PNG ---------------------------------------------------------------------------

_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool


def png_ihdr(raw: memoryview) -> PngHeader:
    """The IHDR fields, checked as libpng checks them (which prints its complaints)."""
    length, kind = _unpack(">I4s", raw, 8, "PNG")
    if kind != b"IHDR" or length != 13:
        raise HeaderError("the PNG does not start with a 13-byte IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = _unpack(">IIBBBBB", raw, 16, "PNG")
    if not (0 < width <= PNG_MAX_SIDE and 0 < height <= PNG_MAX_SIDE):
        raise HeaderError(f"the PNG header declares {width} x {height} pixels: each side must be 1 to {PNG_MAX_SIDE}")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise HeaderError(f"the PNG header has an invalid colour type {colour} with bit depth {depth}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise HeaderError(f"the PNG header has unknown methods (compression {compression}, filter {filtering}, "
                          f"interlace {interlace})")
    return PngHeader(width, height, depth, colour, interlace == 1)


def _png_areas(raw: memoryview) -> list[Area]:
    header = png_ihdr(raw)
    return [Area(header.height, header.width)]


# --- JPEG --------------------------------------------------------------------------

_JPEG_FRAMES = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (baseline..lossless)
_JPEG_BARE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


def _jpeg_areas(raw: memoryview) -> list[Area]:
    i = 2
    while True:
        (prefix, marker) = _unpack("BB", raw, i, "JPEG")
        if prefix != 0xFF:
            raise HeaderError("the JPEG header is corrupt: a marker was expected")
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _JPEG_BARE:
            i += 2
        elif marker in _JPEG_FRAMES:
            height, width = _unpack(">HH", raw, i + 5, "JPEG")
            return [_nonempty(height, width, "JPEG")]
        elif marker in (0xD8, 0xD9, 0xDA):
            raise HeaderError("the JPEG has no frame header before its image data")
        else:
            (length,) = _unpack(">H", raw, i + 2, "JPEG")
            if length < 2:
                raise HeaderError("the JPEG header is corrupt: a segment is shorter than its length field")
            i += 2 + length


# --- GIF ---------------------------------------------------------------------------


def _gif_colour_table(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _gif_skip_sub_blocks(raw: memoryview, i: int) -> int:
    while True:
        (size,) = _unpack("B", raw, i, "GIF")
        i += 1 + size
        if size == 0:
            return i


def _gif_areas(raw: memoryview) -> list[Area]:
    """The logical screen, and every image descriptor, which must lie inside it."""
    screen_width, screen_height, flags = _unpack("<HHB", raw, 6, "GIF")
    areas = [_nonempty(screen_height, screen_width, "GIF")]
    i = 13 + _gif_colour_table(flags)
    while i < len(raw):
        (block,) = _unpack("B", raw, i, "GIF")
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            i = _gif_skip_sub_blocks(raw, i + 2)
        elif block == 0x2C:
            left, top, width, height, image_flags = _unpack("<HHHHB", raw, i + 1, "GIF")
            where = f" in GIF frame {len(areas)}"
            areas.append(_nonempty(height, width, "GIF", where))
            if left + width > screen_width or top + height > screen_height:
                raise HeaderError(f"the GIF header is inconsistent: frame {len(areas) - 1} ({width} x {height} at "
                                  f"{left}, {top}) lies outside its {screen_width} x {screen_height} screen")
            i = _gif_skip_sub_blocks(raw, i + 10 + _gif_colour_table(image_flags) + 1)
        else:
            raise HeaderError(f"the GIF is corrupt: unknown block 0x{block:02x}")
    if len(areas) == 1:
        raise HeaderError("the GIF holds no image")
    return areas


# --- BMP ---------------------------------------------------------------------------


def _bmp_areas(raw: memoryview) -> list[Area]:
    """OS/2 1.x (12-byte) headers have unsigned 16-bit sides; the Windows ones (40 bytes and
    longer, OS/2 2.x's 64 too) signed 32-bit sides, a negative height meaning top-down."""
    (header_size,) = _unpack("<i", raw, 14, "BMP")
    if header_size == 12:
        width, height = _unpack("<HH", raw, 18, "BMP")
    elif 36 <= header_size <= 1024:
        width, height = _unpack("<ii", raw, 18, "BMP")
        if height == -(1 << 31):
            raise HeaderError("the BMP header declares an invalid height")
        height = abs(height)
    else:
        raise HeaderError(f"the BMP has an unsupported {header_size}-byte header")
    return [_nonempty(height, width, "BMP")]


# --- TIFF --------------------------------------------------------------------------

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # the unsigned integer types a size may have
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_BITS, _TIFF_PHOTOMETRIC = 256, 257, 258, 262
_TIFF_ROWS_PER_STRIP, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_SAMPLE_FORMAT = 278, 322, 323, 339
_TIFF_WANTED = {_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_BITS, _TIFF_PHOTOMETRIC, _TIFF_ROWS_PER_STRIP, _TIFF_TILE_WIDTH,
                _TIFF_TILE_LENGTH, _TIFF_SAMPLE_FORMAT}
_TIFF_LOG_LUV = (32844, 32845)  # float photometrics
_ONE_STRIP = 0xFFFFFFFF


@dataclass(frozen=True)
class _TiffLayout:
    order: str  # "<" or ">"
    big: bool  # BigTIFF: 8-byte counts and offsets

    @property
    def offset(self) -> str:
        return "Q" if self.big else "I"

    @property
    def entry_size(self) -> int:
        return 20 if self.big else 12


def _tiff_values(raw: memoryview, layout: _TiffLayout, entry: int) -> tuple[int, tuple[int, ...]]:
    """(tag, integer values) of the directory entry at `entry`."""
    tag, kind, count = _unpack(f"{layout.order}HH{layout.offset}", raw, entry, "TIFF")
    inline = entry + (12 if layout.big else 8)
    if tag not in _TIFF_WANTED:
        return tag, ()
    if kind not in _TIFF_TYPES or not 1 <= count <= MAX_TIFF_ARRAY:
        raise HeaderError(f"the TIFF header is inconsistent: tag {tag} has type {kind} and {count} values")
    size = _TIFF_SIZES[kind] * count
    where = inline if size <= (8 if layout.big else 4) else _unpack(f"{layout.order}{layout.offset}", raw, inline,
                                                                     "TIFF")[0]
    return tag, _unpack(f"{layout.order}{count}{_TIFF_TYPES[kind]}", raw, where, "TIFF")


def _tiff_directory(raw: memoryview, layout: _TiffLayout, offset: int) -> tuple[dict[int, tuple[int, ...]], int]:
    """The wanted tags of the directory at `offset`, and the offset of the next one (0: none)."""
    count_layout = f"{layout.order}{'Q' if layout.big else 'H'}"
    (count,) = _unpack(count_layout, raw, offset, "TIFF")
    if count > MAX_TIFF_ENTRIES:
        raise HeaderError(f"the TIFF header is inconsistent: a directory of {count} entries")
    first = offset + struct.calcsize(count_layout)
    tags: dict[int, tuple[int, ...]] = {}
    for n in range(count):
        tag, values = _tiff_values(raw, layout, first + n * layout.entry_size)
        if tag in tags:
            raise HeaderError(f"the TIFF header is inconsistent: tag {tag} appears twice in a directory")
        tags[tag] = values
    (following,) = _unpack(f"{layout.order}{layout.offset}", raw, first + count * layout.entry_size, "TIFF")
    return tags, following


def _tiff_page_areas(tags: dict[int, tuple[int, ...]], page: int) -> list[Area]:
    where = "" if page == 0 else f" in TIFF page {page + 1}"
    if not tags.get(_TIFF_WIDTH) or not tags.get(_TIFF_LENGTH):
        raise HeaderError(f"the TIFF header does not say the image's size{where}")
    width, height = tags[_TIFF_WIDTH][0], tags[_TIFF_LENGTH][0]
    areas = [_nonempty(height, width, "TIFF", where)]
    if tags.get(_TIFF_TILE_WIDTH) or tags.get(_TIFF_TILE_LENGTH):
        tile_width, tile_length = tags.get(_TIFF_TILE_WIDTH, (0,))[0], tags.get(_TIFF_TILE_LENGTH, (0,))[0]
        areas.append(_nonempty(tile_length, tile_width, "TIFF", f" in a TIFF tile{where}"))
    rows = tags.get(_TIFF_ROWS_PER_STRIP, (0,))[0]
    if 0 < rows < _ONE_STRIP:  # OpenCV sizes its strip buffer by RowsPerStrip, even past the height
        areas.append(Area(rows, width, f" in a TIFF strip{where}"))
    return areas


def _tiff_sample_kind(tags: dict[int, tuple[int, ...]]) -> str | None:
    """What is wrong with the page's samples for an 8-bit photo, or None."""
    formats = set(tags.get(_TIFF_SAMPLE_FORMAT, (1,)))
    if 3 in formats or tags.get(_TIFF_PHOTOMETRIC, (0,))[0] in _TIFF_LOG_LUV:
        return "floating-point"
    if formats - {1}:
        return "signed or of undefined format"
    bits = max(tags.get(_TIFF_BITS, (1,)))
    return f"{bits}-bit" if bits > MAX_SAMPLE_BITS else None


def _tiff_check_samples(tags: dict[int, tuple[int, ...]]) -> None:
    """Only unsigned samples of up to 16 bits are explained: wider ones are refused before
    a decoder allocates 4 or 8 bytes per sample."""
    kind = _tiff_sample_kind(tags)
    if kind is not None:
        raise HeaderError(f"its TIFF samples are {kind}: only 8- and 16-bit images are supported, "
                          "save it as an 8-bit PNG or JPEG")


def _tiff_areas(raw: memoryview) -> list[Area]:
    """Every page (directory) in the chain: the image, its tiles or strips."""
    order = "<" if raw[0] == ord("I") else ">"
    layout = _TiffLayout(order, _unpack(f"{order}H", raw, 2, "TIFF")[0] == 43)
    if layout.big and _unpack(f"{order}HH", raw, 4, "TIFF") != (8, 0):
        raise HeaderError("the BigTIFF header is corrupt")
    (offset,) = _unpack(f"{order}{layout.offset}", raw, 8 if layout.big else 4, "TIFF")
    areas: list[Area] = []
    seen: set[int] = set()
    while offset:
        if offset in seen or len(seen) >= MAX_TIFF_PAGES:
            raise HeaderError(f"the TIFF header is inconsistent: its pages loop or exceed {MAX_TIFF_PAGES}")
        seen.add(offset)
        tags, offset = _tiff_directory(raw, layout, offset)
        if len(seen) == 1:
            _tiff_check_samples(tags)
        areas += _tiff_page_areas(tags, len(seen) - 1)
    if not areas:
        raise HeaderError("the TIFF holds no image")
    return areas


# --- WebP --------------------------------------------------------------------------


def _webp_areas(raw: memoryview) -> list[Area]:
    (chunk,) = _unpack("4s", raw, 12, "WebP")
    if chunk == b"VP8 ":
        tag, start, width, height = _unpack("<3s3sHH", raw, 20, "WebP")
        if tag[0] & 1 or start != b"\x9d\x01\x2a":
            raise HeaderError("the WebP (VP8) header is corrupt")
        return [_nonempty(height & 0x3FFF, width & 0x3FFF, "WebP")]
    if chunk == b"VP8L":
        signature, bits = _unpack("<BI", raw, 20, "WebP")
        if signature != 0x2F:
            raise HeaderError("the WebP (VP8L) header is corrupt")
        return [Area(((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1)]
    if chunk == b"VP8X":  # the canvas: every frame and animation buffer lies within it
        width, height = _unpack("<3s3s", raw, 24, "WebP")
        return [Area(int.from_bytes(height, "little") + 1, int.from_bytes(width, "little") + 1)]
    raise HeaderError(f"the WebP header is corrupt: unknown first chunk {bytes(chunk)!r}")


# --- PNM and PAM -------------------------------------------------------------------


def _pnm_numbers(raw: memoryview, count: int) -> list[int]:
    """The first `count` header numbers after the magic, as OpenCV reads them: whitespace
    and '#' comments (to the end of the line) between them, nothing else."""
    text = bytes(raw[2:MAX_TEXT_HEADER])
    numbers, i = [], 0
    while len(numbers) < count:
        if i >= len(text):
            raise HeaderError("the PNM header is truncated or too long")
        if text[i:i + 1] == b"#":
            ends = [e for e in (text.find(b"\n", i), text.find(b"\r", i)) if e >= 0]
            i = min(ends) + 1 if ends else len(text)
        elif text[i:i + 1].isspace():
            i += 1
        elif text[i:i + 1].isdigit():
            j = i
            while j < len(text) and text[j:j + 1].isdigit():
                j += 1
            if j - i > 10 or int(text[i:j]) > 0x7FFFFFFF:
                raise HeaderError("the PNM header holds a number too large")
            numbers.append(int(text[i:j]))
            i = j
        else:
            raise HeaderError("the PNM header is corrupt")
    return numbers


def _pnm_areas(raw: memoryview) -> list[Area]:
    bitmap = raw[1] in b"14"
    numbers = _pnm_numbers(raw, 2 if bitmap else 3)
    if not bitmap and not 0 < numbers[2] < 1 << 16:
        raise HeaderError(f"the PNM header has an invalid maximum value {numbers[2]}")
    return [_nonempty(numbers[1], numbers[0], "PNM")]


def _pam_fields(raw: memoryview) -> dict[str, str]:
    text = bytes(raw[3:MAX_TEXT_HEADER])
    end = text.find(b"ENDHDR")
    if end < 0:
        raise HeaderError("the PAM header is truncated or too long")
    fields = {}
    for line in text[:end].decode("latin-1").splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            fields[key] = value.strip()
    return fields


def _pam_areas(raw: memoryview) -> list[Area]:
    fields = _pam_fields(raw)
    try:
        width, height, depth, maxval = (int(fields[k]) for k in ("WIDTH", "HEIGHT", "DEPTH", "MAXVAL"))
    except (KeyError, ValueError):
        raise HeaderError("the PAM header lacks WIDTH, HEIGHT, DEPTH or MAXVAL") from None
    if not 1 <= depth <= 4 or not 0 < maxval < 1 << 16:
        raise HeaderError(f"the PAM header has an unsupported depth {depth} or maximum value {maxval}")
    return [_nonempty(height, width, "PAM")]


# --- the formats -------------------------------------------------------------------

Reader = Callable[[memoryview], list[Area]]

_ACCEPTED_FORMATS: tuple[tuple[str, Callable[[bytes], bool], Reader], ...] = (
    ("PNG", lambda h: h.startswith(PNG_SIGNATURE), _png_areas),
    ("JPEG", lambda h: h.startswith(b"\xff\xd8\xff"), _jpeg_areas),
    ("GIF", lambda h: h[:6] in (b"GIF87a", b"GIF89a"), _gif_areas),
    ("BMP", lambda h: h.startswith(b"BM"), _bmp_areas),
    ("TIFF", lambda h: h[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), _tiff_areas),
    ("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _webp_areas),
    ("PNM", lambda h: len(h) >= 3 and h[:1] == b"P" and h[1:2] in b"123456" and h[2:3].isspace(), _pnm_areas),
    ("PAM", lambda h: len(h) >= 3 and h[:2] == b"P7" and h[2:3].isspace(), _pam_areas),
)

_REFUSED_FORMATS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("JPEG 2000", lambda h: h.startswith(b"\0\0\0\x0cjP  \r\n\x87\n") or h.startswith(b"\xff\x4f\xff\x51")),
    ("AVIF/HEIF", lambda h: h[4:8] == b"ftyp"),
    ("JPEG XL", lambda h: h.startswith(b"\xff\x0a") or h.startswith(b"\0\0\0\x0cJXL \r\n\x87\n")),
    ("OpenEXR", lambda h: h.startswith(b"\x76\x2f\x31\x01")),
    ("Radiance HDR", lambda h: h.startswith(b"#?")),
    ("PFM", lambda h: h[:2] in (b"PF", b"Pf")),
    ("Sun raster", lambda h: h.startswith(b"\x59\xa6\x6a\x95")),
    ("QOI", lambda h: h.startswith(b"qoif")),
)
