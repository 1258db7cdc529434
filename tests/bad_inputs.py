"""The bad-input corpus: every input a serving process may be handed that is broken,
odd or hostile, with the documented outcome of each.

A case either fails with `error` (the exact exception class; the message holds
`fragment`, the CLI's one stderr line holds `cli_fragment`, exit code 2) or is accepted
(`error` None): then `check(explanation, source)` compares what was decoded with an
independent reference (Pillow, or NumPy arithmetic on the source pixels).

Each case has a builder `make(folder, photos)` returning the thing under test (a path,
an array, bytes, a PIL image, or a model path) and, where the CLI can express it, the
arguments of `python -m onnx_sise explain` (`cli`).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent / "onnx_sise" / "model" / "preparation"))
from handwritten_models import SIZE, build, build_graph  # noqa: E402

from onnx_sise.errors import (  # noqa: E402
    ExportError,
    ImageError,
    ModelError,
    OptionError,
    OutputError,
    SiseError,
    TargetError,
    TimeLimitError,
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # image | array | model | target | option | output
    make: Callable[[Path, Path], Any]
    error: type[SiseError] | None
    fragment: str
    cli: Callable[..., list[str]] | None = None
    cli_fragment: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Any, Any], None] | None = None
    within: float = 600.0  # seconds: a case still running then has hung


# --- images -----------------------------------------------------------------------


def coffee(photos: Path) -> np.ndarray:
    return cv2.imread(str(photos / "coffee.png"))[..., ::-1].copy()


def encoded(rgb: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)
    assert ok
    return data.tobytes()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def flipped(data: bytes, at: float) -> bytes:
    broken = bytearray(data)
    broken[int(len(broken) * at)] ^= 0xFF
    return bytes(broken)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png() -> bytes:
    """A 1 kB PNG that declares 100000 x 100000 RGB pixels (30 GB decoded)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + png_chunk(b"IEND", b""))


def gradient16() -> np.ndarray:
    """A 16-bit RGB image with values that 8-bit truncation and rounding tell apart."""
    rng = np.random.default_rng(16)
    return rng.integers(0, 65536, size=(40, 60, 3), dtype=np.uint16)


def rotated_jpeg(folder: Path, photos: Path) -> Path:
    """coffee.png stored unrotated with EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = folder / "rotated.jpg"
    Image.fromarray(coffee(photos)).save(path, "JPEG", quality=95, exif=exif)
    return path


def pil_palette(folder: Path, photos: Path) -> Path:
    path = folder / "palette.png"
    Image.fromarray(coffee(photos)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
    return path


def pil_gray_alpha(folder: Path, photos: Path) -> Path:
    path = folder / "gray_alpha.png"
    Image.fromarray(coffee(photos)).convert("LA").save(path)
    return path


def symlink_to_nothing(folder: Path, photos: Path) -> Path:
    link = folder / "dangling.png"
    link.symlink_to(folder / "gone.png")
    return link


def fifo(folder: Path, photos: Path) -> Path:
    """A named pipe with no writer: reading it would block forever."""
    import os

    path = folder / "pipe.png"
    os.mkfifo(path)
    return path


def check_shape(height: int, width: int) -> Callable[[Any, Any], None]:
    def check(explanation: Any, source: Any) -> None:
        assert explanation.saliency.shape == (height, width)

    return check


def check_decoded(reference: Callable[[Any], np.ndarray], tolerance: float = 0.0) -> Callable[[Any, Any], None]:
    """The decoded photo equals `reference(source)` (mean absolute difference <= tolerance)."""

    def check(explanation: Any, source: Any) -> None:
        from onnx_sise.images.sources import rgb_of

        decoded, expected = rgb_of(source), reference(source)
        assert decoded.shape == expected.shape and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(float) - expected).mean() <= tolerance
        assert explanation.saliency.shape == expected.shape[:2]

    return check


def sixteen_to_eight(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def pil_rgb(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def exif_reference(path: Path) -> np.ndarray:
    """The stored pixels rotated as EXIF orientation 6 says: 90 degrees clockwise."""
    return np.rot90(np.asarray(Image.open(path).convert("RGB")), k=-1)


# --- models -----------------------------------------------------------------------


def image_value(name: str = "image", shape: list | None = None):  # noqa: ANN201
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape or [1, 3, SIZE, SIZE])


def conv_weights(name: str, out: int, inp: int, seed: int = 0):  # noqa: ANN201
    from onnx import numpy_helper

    return numpy_helper.from_array(np.random.default_rng(seed).normal(0, 0.3, (out, inp, 3, 3)).astype(np.float32), name)


def detector(folder: Path, photos: Path) -> Path:
    """Boxes (1, 64, 4) and box scores (1, 64): a detection head, not class scores."""
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1, -1, 4], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "w2"], ["d"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["d", "shape"], ["boxes"]),
             helper.make_node("ReduceMax", ["boxes"], ["box_scores"], axes=[2], keepdims=0)]
    return build_graph(folder / "detector.onnx", nodes, [image_value()],
                       [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 64, 4]),
                        helper.make_tensor_value_info("box_scores", TensorProto.FLOAT, [1, 64])],
                       [conv_weights("w", 4, 3), conv_weights("w2", 4, 4, 1), shape], opset=17)


def segmenter(folder: Path, photos: Path) -> Path:
    from onnx import TensorProto, helper

    return build_graph(folder / "segmenter.onnx",
                       [helper.make_node("Conv", ["image", "w"], ["mask"], pads=[1, 1, 1, 1])], [image_value()],
                       [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 4, SIZE, SIZE])],
                       [conv_weights("w", 4, 3)])


def two_images(folder: Path, photos: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    head = numpy_helper.from_array(np.ones((4, 5), np.float32), "head")
    nodes = [helper.make_node("Add", ["left", "right"], ["both"]),
             helper.make_node("Conv", ["both", "w"], ["c"], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "head"], ["logits"])]
    return build_graph(folder / "stereo.onnx", nodes, [image_value("left"), image_value("right")],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
                       [conv_weights("w", 4, 3), head])


def dynamic_size(folder: Path, photos: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    head = numpy_helper.from_array(np.ones((4, 5), np.float32), "head")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "head"], ["logits"])]
    return build_graph(folder / "any_size.onnx", nodes, [image_value(shape=["N", 3, "H", "W"])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                       [conv_weights("w", 4, 3), head])


def local_response_norm(folder: Path, photos: Path) -> Path:
    """A classifier with a LocalResponseNormalization layer (AlexNet's), which has no
    gradient rule: refused by op type and node name."""
    from onnx import TensorProto, helper, numpy_helper

    head = numpy_helper.from_array(np.ones((4, 5), np.float32), "head")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1], name="down"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("LRN", ["r"], ["n"], size=3, name="the_lrn"),
             helper.make_node("Conv", ["n", "w2"], ["d"], strides=[2, 2], pads=[1, 1, 1, 1], name="down2"),
             helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "head"], ["logits"], name="fc")]
    return build_graph(folder / "lrn.onnx", nodes, [image_value()],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
                       [conv_weights("w", 4, 3), conv_weights("w2", 4, 4, 1), head])


def hardmax_head(folder: Path, photos: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    head = numpy_helper.from_array(np.ones((4, 5), np.float32), "head")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], strides=[2, 2], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "head"], ["logits"], name="fc"),
             helper.make_node("Hardmax", ["logits"], ["y"], name="the_hardmax")]
    return build_graph(folder / "hardmax.onnx", nodes, [image_value()],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [conv_weights("w", 4, 3), head])


def escaping_external_data(folder: Path, photos: Path) -> Path:
    """A classifier whose weights file is referenced as ../secret.weights."""
    import onnx

    inner = folder / "models"
    inner.mkdir()
    source = build(inner / "classifier.onnx", external=True)
    model = onnx.load(str(source), load_external_data=False)
    (inner / "classifier.weights").rename(folder / "secret.weights")
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.weights"
    onnx.save(model, str(source))
    return source


def truncated_model(folder: Path, photos: Path, lite0: Path) -> Path:
    data = lite0.read_bytes()
    return write(folder, "truncated.sise.onnx", data[: len(data) // 2])


def malformed_metadata(folder: Path, photos: Path, lite0: Path) -> Path:
    import onnx

    model = onnx.load(str(lite0))
    for prop in model.metadata_props:
        if prop.key == "onnx_sise":
            prop.value = '["not", "an", "object"]'
    path = folder / "tampered.sise.onnx"
    onnx.save(model, str(path))
    return path


def with_external_reference(folder: Path, photos: Path) -> bytes:
    source = build(folder / "external.onnx", external=True)
    return source.read_bytes()


# --- model files and metadata (issue 13) ---------------------------------------------


def retouched(change: Callable[[dict], object], name: str) -> Callable[[Path, Path, Path], Path]:
    """A builder of the real Lite0 with its metadata document edited by `change`."""

    def make(folder: Path, photos: Path, lite0: Path) -> Path:
        import onnx

        model = onnx.load(str(lite0))
        for prop in model.metadata_props:
            if prop.key == "onnx_sise":
                document = json.loads(prop.value)
                change(document)
                prop.value = json.dumps(document)
        path = folder / f"{name}.sise.onnx"
        onnx.save(model, str(path))
        return path

    return make


def non_utf8_metadata(folder: Path, photos: Path, lite0: Path) -> Path:
    """Lite0 whose metadata's model name holds bytes that are not UTF-8 (same length, so
    the protobuf stays well formed)."""
    data = lite0.read_bytes()
    name = b'"model_name":"efficientnet-lite0"'
    assert data.count(name) == 1
    return write(folder, "latin1.sise.onnx", data.replace(name, name.replace(b"ef", b"\xff\xfe", 1)))


def regrouped_conv(folder: Path, photos: Path, lite0: Path) -> Path:
    """Lite0 with one depthwise Conv's `group` set to 1: the graph loads, its run fails."""
    import onnx

    model = onnx.load(str(lite0))
    group = next(a for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group" and a.i > 1)
    group.i = 1
    path = folder / "regrouped.sise.onnx"
    onnx.save(model, str(path))
    return path


def raw_metadata(text: str, name: str) -> Callable[[Path, Path, Path], Path]:
    def make(folder: Path, photos: Path, lite0: Path) -> Path:
        import onnx

        model = onnx.load(str(lite0))
        next(p for p in model.metadata_props if p.key == "onnx_sise").value = text
        path = folder / f"{name}.sise.onnx"
        onnx.save(model, str(path))
        return path

    return make


def padded(document: dict) -> None:
    document["padding"] = "x" * (17 * 2**20)


def set_in(*keys: object, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        inner: Any = document
        for key in keys[:-1]:
            inner = inner[key]
        inner[keys[-1]] = value

    return change


METADATA_MALFORMED = "explainable ONNX metadata is malformed"
GRAPH_MISMATCH = "the graph does not match its metadata"


# --- the corpus -------------------------------------------------------------------


# The CLI arguments of a case: cli(model, source, photo, out, cache), all strings, where
# `source` is what the case made, `photo` a good photo and `model` the real Lite0.


def explain_args(model: str, image: str, out: str, cache: str, *extra: str) -> list[str]:
    return ["explain", model, image, "--out", out, "--cache-dir", cache, "--method", "gradcam", *extra]


def image_cli(*extra: str) -> Callable[..., list[str]]:
    return lambda model, source, photo, out, cache: explain_args(model, source, out, cache, *extra)


def model_cli(model: str, source: str, photo: str, out: str, cache: str) -> list[str]:
    return explain_args(source, photo, out, cache)


def photo_cli(*extra: str) -> Callable[..., list[str]]:
    return lambda model, source, photo, out, cache: explain_args(model, photo, out, cache, *extra)


def output_cli(model: str, source: str, photo: str, out: str, cache: str) -> list[str]:
    return explain_args(model, photo, source, cache)


def directories_in_the_way(folder: Path, photos: Path) -> Path:
    """An output folder where the overlay's name (the API's a.png, the CLI's
    coffee.gradcam.png) is taken by a directory, and the map's by an old file."""
    out = folder / "out"
    for name in ("a.png", "coffee.gradcam.png"):
        (out / name).mkdir(parents=True)
    for name in ("a.npy", "coffee.gradcam.npy"):
        (out / name).write_bytes(b"an old map")
    return out


def rgb_array(folder: Path, photos: Path) -> np.ndarray:
    return coffee(photos)


CORRUPT = "cannot decode"
NOT_RGB = "must be (H, W, 3) uint8 RGB"
NOT_ONNX = "is not a loadable ONNX model"

# --- image formats (issue 13) -------------------------------------------------------
# Every decoder gets the pixel budget before it allocates (the header of each accepted
# format is read first), other formats OpenCV decodes are refused by name, and libpng
# never adds its own lines to the one-line error.


def gif_bomb(side: int = 20_000) -> bytes:
    """A 35-byte GIF whose logical screen and one frame declare side x side pixels."""
    return (b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00\x3b")


def tiff_bomb(side: int = 20_000, tile: int | None = None) -> bytes:
    """A little-endian 8-bit gray TIFF of side x side pixels in one deflated strip of
    zeros (390 kB), or, with `tile`, a tiny image that declares tile x tile tiles."""
    strip = deflated_zeros(side * side) if tile is None else zlib.compress(bytes(256))
    layout = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0), (277, 3, 1)]
    layout += [(278, 4, side), (279, 4, len(strip))] if tile is None else [(322, 4, tile), (323, 4, tile),
                                                                          (324, 4, 0), (325, 4, len(strip))]
    data_at = 8 + 2 + 12 * len(layout) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, data_at if tag in (273, 324) else value)
                       if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0) for tag, kind, value in layout)
    return b"II*\0" + struct.pack("<IH", 8, len(layout)) + entries + b"\0\0\0\0" + strip


def deflated_zeros(size: int, step: int = 1 << 24) -> bytes:
    squeezer = zlib.compressobj(9)
    parts = [squeezer.compress(bytes(min(step, size - start))) for start in range(0, size, step)]
    return b"".join(parts) + squeezer.flush()


def bmp_bomb() -> bytes:
    """A 54-byte top-down BMP header declaring 30000 x 30000 pixels, and no pixels."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 30000, -30000, 1, 24, 0, 0,
                                                                      0, 0, 0, 0)


def webp_bomb() -> bytes:
    """A WebP whose VP8X canvas declares 20000 x 20000 pixels around a 1 x 1 image."""
    canvas = struct.pack("<B3x", 0) + (19999).to_bytes(3, "little") * 2
    frame = b"\x2f" + struct.pack("<I", 0) + b"\0" * 4
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + canvas + b"VP8L" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_with(header: tuple[int, ...] = (4, 4, 8, 2, 0, 0, 0), extra: bytes = b"", image_data: bytes | None = None) -> bytes:
    """A PNG with the given IHDR fields, extra chunks before IDAT, and image data
    (default: zero rows of a 4 x 4 RGB image), every CRC correct."""
    data = zlib.compress(bytes(13 * 4)) if image_data is None else image_data
    return (PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", *header)) + extra + png_chunk(b"IDAT", data)
            + png_chunk(b"IEND", b""))


def cv2_encoded(photos: Path, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, coffee(photos)[:128, :128, ::-1].copy())
    assert ok, ext
    return data.tobytes()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OVER_BUDGET = "more than the limit of"
NOT_ACCEPTED = "is not an accepted format (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM/PAM)"

IMAGE_FORMAT_CASES: list[Case] = [
    # Memory bombs: refused from the header, before any decoder allocates.
    Case("gif_bomb", "image", lambda f, p: write(f, "bomb.gif", gif_bomb()), ImageError,
         f"declares 20000 x 20000 pixels, {OVER_BUDGET}", image_cli()),
    Case("tiff_bomb", "image", lambda f, p: write(f, "bomb.tiff", tiff_bomb()), ImageError,
         f"declares 20000 x 20000 pixels, {OVER_BUDGET}", image_cli()),
    Case("tiff_tile_bomb", "image", lambda f, p: write(f, "tiles.tiff", tiff_bomb(16, tile=32768)), ImageError,
         "declares 32768 x 32768 pixels in a TIFF tile", image_cli()),
    Case("bmp_top_down_bomb", "image", lambda f, p: write(f, "bomb.bmp", bmp_bomb()), ImageError,
         f"declares 30000 x 30000 pixels, {OVER_BUDGET}", image_cli()),
    Case("webp_canvas_bomb", "image", lambda f, p: write(f, "bomb.webp", webp_bomb()), ImageError,
         f"declares 20000 x 20000 pixels, {OVER_BUDGET}", image_cli()),
    # Formats OpenCV decodes but whose headers are not read: refused by name.
    Case("jpeg_2000", "image", lambda f, p: write(f, "photo.jp2", cv2_encoded(p, ".jp2")), ImageError,
         f"JPEG 2000 {NOT_ACCEPTED}", image_cli()),
    Case("sun_raster", "image", lambda f, p: write(f, "photo.ras", cv2_encoded(p, ".ras")), ImageError,
         f"Sun raster {NOT_ACCEPTED}", image_cli()),
    # PNG defects libpng would print its own lines about: one line, ours.
    Case("png_invalid_bit_depth", "image", lambda f, p: write(f, "depth.png", png_with((4, 4, 3, 2, 0, 0, 0))),
         ImageError, "invalid colour type 2 with bit depth 3", image_cli()),
    Case("png_unknown_interlace", "image", lambda f, p: write(f, "interlace.png", png_with((4, 4, 8, 2, 0, 0, 2))),
         ImageError, "unknown methods (compression 0, filter 0, interlace 2)", image_cli()),
    Case("png_zero_width", "image", lambda f, p: write(f, "zero.png", png_with((0, 4, 8, 2, 0, 0, 0))), ImageError,
         "declares 0 x 4 pixels", image_cli()),
    Case("png_over_libpng_width", "image",
         lambda f, p: write(f, "wide.png", png_with((1_000_001, 1, 8, 0, 0, 0, 0), image_data=b"")), ImageError,
         "each side must be 1 to 1000000", image_cli()),
    Case("png_corrupt_deflate", "image",
         lambda f, p: write(f, "deflate.png", png_with(image_data=b"\x78\x9c\xff\xff\xff\xff")), ImageError,
         "compressed image data is corrupt", image_cli()),
    Case("png_too_much_data", "image", lambda f, p: write(f, "long.png", png_with(image_data=zlib.compress(bytes(999)))),
         ImageError, "holds more image data than its size", image_cli()),
    Case("png_bad_row_filter", "image",
         lambda f, p: write(f, "filter.png", png_with(image_data=zlib.compress(b"\x09" * 52))), ImageError,
         "invalid row filter", image_cli()),
    Case("png_unknown_critical_chunk", "image",
         lambda f, p: write(f, "critical.png", png_with(extra=png_chunk(b"ABCD", b"x"))), ImageError,
         "unknown critical chunk 'ABCD'", image_cli()),
]


CASES: list[Case] = [
    # Image files: refused.
    Case("missing_file", "image", lambda f, p: f / "nope.png", ImageError, "image not found", image_cli()),
    Case("dangling_symlink", "image", symlink_to_nothing, ImageError, "image not found", image_cli()),
    Case("fifo_image", "image", fifo, ImageError, "is not a regular file (a pipe, device or socket)", image_cli()),
    Case("device_image", "image", lambda f, p: Path("/dev/zero"), ImageError, "is not a regular file", image_cli()),
    Case("directory", "image", lambda f, p: (f / "photos.png").mkdir() or f / "photos.png", ImageError,
         "is a directory, not an image file", image_cli()),
    Case("zero_bytes", "image", lambda f, p: write(f, "empty.png", b""), ImageError, "is empty (0 bytes)",
         image_cli()),
    Case("text_named_png", "image", lambda f, p: write(f, "notes.png", b"hello\n" * 50), ImageError, CORRUPT,
         image_cli()),
    Case("truncated_png", "image", lambda f, p: write(f, "half.png", encoded(coffee(p), ".png")[:20000]),
         ImageError, CORRUPT, image_cli()),
    Case("png_without_end", "image", lambda f, p: write(f, "noend.png", encoded(coffee(p), ".png")[:-12]),
         ImageError, CORRUPT, image_cli()),
    Case("corrupt_png_crc", "image", lambda f, p: write(f, "flip.png", flipped(encoded(coffee(p), ".png"), 0.5)),
         ImageError, CORRUPT, image_cli()),
    Case("truncated_jpeg", "image", lambda f, p: write(f, "half.jpg", encoded(coffee(p), ".jpg")[:9000]),
         ImageError, CORRUPT, image_cli()),
    Case("jpeg_header_then_garbage", "image",
         lambda f, p: write(f, "garbage.jpg", encoded(coffee(p), ".jpg")[:200] + bytes(range(256)) * 8),
         ImageError, CORRUPT, image_cli()),
    Case("decompression_bomb_png", "image", lambda f, p: write(f, "bomb.png", bomb_png()), ImageError,
         "declares 100000 x 100000 pixels", image_cli()),
    Case("float_tiff", "image", lambda f, p: write(f, "hdr.tiff", encoded(np.ones((8, 8, 3), np.float32), ".tiff")),
         ImageError, "only 8- and 16-bit images are supported", image_cli()),
    # Image files: converted, as documented.
    Case("png_16_bit", "image", lambda f, p: write(f, "deep.png", encoded(gradient16(), ".png")),
         None, "scaled to 8 bits: round(v * 255 / 65535)", image_cli(),
         check=check_decoded(lambda s: sixteen_to_eight(gradient16()))),
    Case("grayscale_png", "image", lambda f, p: write(f, "gray.png", encoded(coffee(p)[..., 1], ".png")), None,
         "grayscale: the gray value in all three channels", image_cli(),
         check=check_decoded(lambda s: np.repeat(np.asarray(Image.open(s))[..., None], 3, axis=2))),
    Case("rgba_png", "image",
         lambda f, p: write(f, "alpha.png", cv2.imencode(".png", np.dstack([coffee(p)[..., ::-1],
                                                                             np.full((400, 600), 40, np.uint8)]))[1]
                            .tobytes()),
         None, "alpha dropped, colour channels kept as stored", image_cli(),
         check=check_decoded(lambda s: np.asarray(Image.open(s))[..., :3])),
    Case("palette_png", "image", pil_palette, None, "palette expanded to RGB", image_cli(),
         check=check_decoded(pil_rgb)),
    Case("gray_alpha_png", "image", pil_gray_alpha, None, "gray + alpha: gray in three channels", image_cli(),
         check=check_decoded(lambda s: np.repeat(np.asarray(Image.open(s))[..., :1], 3, axis=2))),
    Case("one_by_one", "image", lambda f, p: write(f, "dot.png", encoded(np.full((1, 1, 3), 200, np.uint8), ".png")),
         None, "a 1 x 1 map", image_cli(), check=check_shape(1, 1)),
    Case("ten_thousand_by_three", "image",
         lambda f, p: write(f, "sliver.png", encoded(np.random.default_rng(3).integers(0, 256, (10000, 3, 3),
                                                                                         dtype=np.uint8), ".png")),
         None, "a 10000 x 3 map", image_cli(), check=check_shape(10000, 3)),
    Case("exif_rotated_jpeg", "image", rotated_jpeg, None, "EXIF orientation honoured", image_cli(),
         check=check_decoded(exif_reference, tolerance=1.5)),
    *IMAGE_FORMAT_CASES,
    # In-memory images (API only).
    Case("nan_in_tensor", "array", lambda f, p: np.full((1, 3, 224, 224), np.nan, np.float32), ImageError,
         "NaN or infinite"),
    Case("inf_in_tensor", "array", lambda f, p: np.where(np.eye(224, dtype=bool)[None], np.inf,
                                                         np.zeros((3, 224, 224), np.float32)), ImageError,
         "NaN or infinite"),
    Case("tensor_of_wrong_shape", "array", lambda f, p: np.zeros((224, 224, 3), np.float32), ImageError,
         "must have shape (3, 224, 224)"),
    Case("four_channel_array", "array", lambda f, p: np.zeros((50, 50, 4), np.uint8), ImageError, NOT_RGB),
    Case("two_dimensional_array", "array", lambda f, p: np.zeros((50, 50), np.uint8), ImageError, NOT_RGB),
    Case("uint16_array", "array", lambda f, p: np.zeros((50, 50, 3), np.uint16), ImageError, NOT_RGB),
    Case("empty_array", "array", lambda f, p: np.zeros((0, 50, 3), np.uint8), ImageError, "image array is empty"),
    Case("not_an_image", "array", lambda f, p: [[1, 2, 3]], ImageError, "image must be a path, encoded bytes"),
    Case("corrupt_bytes", "array", lambda f, p: b"\x89PNG\r\n\x1a\n" + b"\0" * 100, ImageError,
         "cannot decode the image bytes"),
    Case("pil_float_mode", "array", lambda f, p: Image.fromarray(np.ones((20, 20), np.float32)), ImageError,
         "PIL mode 'F' holds unbounded values"),
    Case("pil_16_bit_gray", "array", lambda f, p: Image.fromarray(np.full((20, 30), 40000, np.uint16)), None,
         "scaled to 8 bits", check=check_decoded(lambda s: np.full((20, 30, 3), sixteen_to_eight(np.array(40000))))),
    Case("pil_cmyk", "array", lambda f, p: Image.fromarray(coffee(p)).convert("CMYK"), None, "converted by Pillow",
         check=check_decoded(lambda s: np.asarray(s.convert("RGB")))),
    Case("strided_view", "array", lambda f, p: coffee(p)[::-1, ::2], None, "any strides",
         check=check_decoded(lambda s: np.ascontiguousarray(s))),
    # Models.
    Case("model_missing", "model", lambda f, p, m: f / "none.onnx", ModelError, "model file not found", model_cli),
    Case("model_is_directory", "model", lambda f, p, m: (f / "m.onnx").mkdir() or f / "m.onnx", ModelError,
         "is not a file", model_cli),
    Case("model_zero_bytes", "model", lambda f, p, m: write(f, "empty.onnx", b""), ModelError,
         "is empty (0 bytes): not an ONNX model", model_cli),
    Case("model_not_onnx", "model", lambda f, p, m: write(f, "model.onnx", b"this is not a model\n"), ModelError,
         NOT_ONNX, model_cli),
    Case("model_truncated", "model", truncated_model, ModelError, NOT_ONNX, model_cli),
    Case("model_metadata_tampered", "model", malformed_metadata, ModelError, "metadata is malformed", model_cli),
    Case("model_external_data_escapes", "model", lambda f, p, m: escaping_external_data(f, p), ModelError,
         "points outside the model's directory", model_cli),
    Case("model_bytes_not_onnx", "model", lambda f, p, m: b"\x08\x07garbage" * 10, ModelError, NOT_ONNX),
    Case("model_bytes_with_external_data", "model", lambda f, p, m: with_external_reference(f, p), ModelError,
         "cannot reference files"),
    Case("detector", "model", lambda f, p, m: detector(f, p), ExportError, "expected class scores", model_cli),
    Case("segmentation", "model", lambda f, p, m: segmenter(f, p), ExportError, "expected class scores", model_cli),
    Case("two_image_inputs", "model", lambda f, p, m: two_images(f, p), ExportError, "the model has 2 inputs",
         model_cli),
    Case("dynamic_spatial_size", "model", lambda f, p, m: dynamic_size(f, p), ExportError,
         "has a dynamic spatial size", model_cli),
    Case("op_not_differentiable", "model", lambda f, p, m: local_response_norm(f, p), ExportError,
         "op LRN (node 'the_lrn') has no gradient rule", model_cli),
    Case("op_without_rule_in_the_head", "model", lambda f, p, m: hardmax_head(f, p), ExportError,
         "op Hardmax (node 'the_hardmax') has no gradient rule", model_cli),
    # Targets.
    Case("class_negative", "target", rgb_array, TargetError, "class id -1 is out of range",
         photo_cli("--target", "-1"), options={"target": -1}),
    Case("class_too_large", "target", rgb_array, TargetError, "class id 1000 is out of range",
         photo_cli("--target", "1000"), options={"target": 1000}),
    Case("class_not_an_int", "target", rgb_array, TargetError, "target must be a class id",
         options={"target": "cat"}),
    Case("top_k_zero", "target", rgb_array, TargetError, "top_k must be between 1 and 1000",
         photo_cli("--top-k", "0"), options={"top_k": 0}),
    # Options.
    Case("batch_size_zero", "option", rgb_array, OptionError, "batch_size must be an integer in [1, 1024], got 0",
         photo_cli("--batch-size", "0"), cli_fragment="--batch-size must be at least 1", options={"batch_size": 0}),
    Case("precision_unknown", "option", rgb_array, OptionError, "precision must be one of auto, f32, bf16, got 'fp64'",
         photo_cli("--provider", "openvino", "--precision", "fp64"), cli_fragment="invalid choice: 'fp64'",
         options={"provider": "openvino", "precision": "fp64"}),
    Case("precision_without_openvino", "option", rgb_array, OptionError,
         "precision bf16 is an OpenVINO precision: give provider openvino too", photo_cli("--precision", "bf16"),
         options={"precision": "bf16"}),
    Case("mu_nan", "option", rgb_array, OptionError, "mu must be a finite number", photo_cli("--method", "sise",
                                                                                            "--mu", "nan"),
         options={"method": "sise", "mu": float("nan")}),
    Case("sise_margin_zero", "option", rgb_array, OptionError, "sise_margin must lie in (0, 1], got 0",
         photo_cli("--method", "sise", "--sise-selection", "soft", "--sise-margin", "0"),
         options={"method": "sise", "sise_selection": "soft", "sise_margin": 0.0}),
    Case("rise_masks_zero", "option", rgb_array, OptionError, "rise_masks must lie in [1, 100000], got 0",
         photo_cli("--method", "rise", "--rise-masks", "0"), options={"method": "rise", "rise_masks": 0}),
    Case("unknown_layer", "option", rgb_array, OptionError, "layer 'block9' is not a tap",
         photo_cli("--layer", "block9"), options={"layer": "block9"}),
    Case("unknown_method", "option", rgb_array, OptionError, "method must be one of", options={"method": "lime"}),
    Case("max_seconds_negative", "option", rgb_array, OptionError, "max_seconds must be a positive number",
         photo_cli("--max-seconds", "-1"), options={"max_seconds": -1}),
    Case("time_limit_reached", "option", rgb_array, TimeLimitError, "stopped at max_seconds=0.05",
         photo_cli("--method", "sise", "--max-seconds", "0.05"), options={"method": "sise", "max_seconds": 0.05}),
    # Options that size an allocation or a loop, and API arguments of the wrong type (issue 13).
    Case("batch_size_huge", "option", rgb_array, OptionError, "batch_size must be an integer in [1, 1024], got 100000",
         photo_cli("--batch-size", "100000"), options={"batch_size": 100000}),
    Case("ucag_n_huge", "option", rgb_array, OptionError, "ucag_n must lie in [2, 32]",
         photo_cli("--method", "ucag-gradcam", "--ucag-n", "1000"), options={"method": "ucag-gradcam", "ucag_n": 1000}),
    Case("sigcam_steps_huge", "option", rgb_array, OptionError, "sigcam_steps must lie in [1, 10000]",
         photo_cli("--method", "sigcam", "--sigcam-steps", "100000"),
         options={"method": "sigcam", "sigcam_steps": 100000}),
    Case("rise_cells_huge", "option", rgb_array, OptionError, "rise_cells must lie in [1, 64]",
         options={"method": "rise", "rise_cells": 10**6}),
    Case("seed_huge", "option", rgb_array, OptionError, "seed must lie in [0, 9.22337e+18]",
         photo_cli("--method", "rise", "--seed", str(2**70)), options={"method": "rise", "seed": 2**70}),
    Case("sigcam_theta_string", "option", rgb_array, OptionError, "sigcam_theta must be a finite number, got '0.5'",
         options={"method": "sigcam", "sigcam_theta": "0.5"}),
    Case("ucag_rho_bool", "option", rgb_array, OptionError, "ucag_rho must be a finite number, got True",
         options={"method": "ucag-gradcam", "ucag_rho": True}),
    Case("top_k_float", "option", rgb_array, OptionError, "top_k must be an integer, got 2.5",
         options={"top_k": 2.5}),
    Case("targets_not_a_list", "option", rgb_array, OptionError, "targets must be a list of class ids",
         options={"targets": 967}),
    Case("sigcam_time_limit", "option", rgb_array, TimeLimitError, "stopped at max_seconds=1",
         photo_cli("--method", "sigcam", "--sigcam-base", "none", "--sigcam-steps", "10000", "--max-seconds", "1"),
         options={"method": "sigcam", "sigcam_base": "none", "sigcam_steps": 10000, "max_seconds": 1}, within=90),
    Case("ucag_time_limit", "option", rgb_array, TimeLimitError, "stopped at max_seconds=1",
         photo_cli("--method", "ucag-gradcam", "--ucag-n", "32", "--max-seconds", "1"),
         options={"method": "ucag-gradcam", "ucag_n": 32, "max_seconds": 1}, within=90),
    # --- model files and metadata (issue 13) ---
    Case("model_is_fifo", "model", lambda f, p, m: fifo(f, p), ModelError,
         "is not a regular file (a pipe, device or socket)", model_cli),
    Case("metadata_input_size", "model", retouched(set_in("input", "height", value=200), "size"), ModelError,
         "tensor 'image' has shape [1, 3, 224, 224], its metadata says [1, 3, 200, 224]", model_cli),
    Case("metadata_class_count", "model",
         retouched(lambda d: d.update(num_classes=999, labels=d["labels"][:999]), "classes"), ModelError,
         "tensor 'target_weights' has shape [?, 1000], its metadata says [1, 999]", model_cli),
    Case("metadata_layout", "model", retouched(set_in("input", "layout", value="NHWC"), "layout"), ModelError,
         "its metadata says [1, 224, 224, 3]", model_cli),
    Case("metadata_tap_channels", "model", retouched(set_in("taps", 0, "channels", value=17), "tap"), ModelError,
         GRAPH_MISMATCH, model_cli),
    Case("metadata_string_for_int", "model", retouched(set_in("input", "height", value="224"), "text"), ModelError,
         "input.height must be an integer from 1 to", model_cli),
    Case("metadata_float_height", "model", retouched(set_in("input", "width", value=224.5), "float"), ModelError,
         "input.width must be an integer from 1 to", model_cli),
    Case("metadata_bool_for_int", "model", retouched(set_in("taps", 1, "reduction", value=True), "bool"),
         ModelError, "taps[1].reduction must be an integer", model_cli),
    Case("metadata_null_name", "model", retouched(set_in("model_name", value=None), "null"), ModelError,
         "model_name must be text", model_cli),
    Case("metadata_nested_lists", "model", retouched(set_in("input", "mean", value=[[1, 2], [3], [4]]), "nested"),
         ModelError, "input.mean must be a number", model_cli),
    Case("metadata_labels_not_text", "model", retouched(set_in("labels", value=list(range(1000))), "labels"),
         ModelError, "labels[0] must be text", model_cli),
    Case("metadata_not_utf8", "model", non_utf8_metadata, ModelError, "has metadata that is not UTF-8 text",
         model_cli),
    Case("metadata_deeply_nested", "model", raw_metadata("[" * 100_000 + "]" * 100_000, "deep"), ModelError,
         "nested more than", model_cli),
    Case("metadata_huge", "model", retouched(padded, "huge"), ModelError, "characters: more than", model_cli),
    Case("conv_group_changed", "model", regrouped_conv, ModelError, "failed in onnxruntime", model_cli),
    # Output directories.
    Case("output_under_a_file", "output", lambda f, p: (f / "file").write_text("") or f / "file" / "sub", OutputError,
         "cannot create output directory", output_cli),
    Case("output_is_a_file", "output", lambda f, p: (f / "taken").write_text("") or f / "taken", OutputError,
         "cannot create output directory", output_cli),
    # --- outputs (issue 13) ---
    Case("output_name_taken_by_a_directory", "output", directories_in_the_way, OutputError,
         "a directory of that name is in the way", output_cli),
]

# The one kind of damage decoders repair rather than refuse, documented, not refused:
# a JPEG whose entropy-coded data is damaged but whose structure is complete decodes
# with the damaged blocks as libjpeg leaves them (as Pillow, OpenCV and browsers do).
