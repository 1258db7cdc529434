"""Property-based fuzzing (hypothesis) of the entry points that take untrusted input:
image decoding (bytes, mutated real PNG/JPEG/BMP files), in-memory arrays, ONNX bytes,
method options and the command line's parsing. The only outcomes allowed are a result
or the documented SiseError (argparse's usage exit for the CLI), never another exception.

CI runs a few examples each (ONNX_SISE_FUZZ_EXAMPLES, default 40); a longer run:
    ONNX_SISE_FUZZ_EXAMPLES=20000 pytest tests/onnx_sise/test_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_inputs import png_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from onnx_sise import Explainer, ImageError, ModelError, OptionError, SiseError
from onnx_sise.cli.arguments import UsageError, build_parser, class_ids, size_pair, triple
from onnx_sise.images.decode import decode_rgb
from onnx_sise.images.model_input import model_input
from onnx_sise.methods import checked
from onnx_sise.methods.cam import CAM_METHODS
from onnx_sise.model.external_data import external_data_locations
from onnx_sise.model.info import InputSpec, ModelInfo, Tap
from onnx_sise.model.protobuf import MalformedModel

EXAMPLES = int(os.environ.get("ONNX_SISE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SPEC = InputSpec(height=32, width=32)


SEED_PHOTO = np.random.default_rng(0).integers(0, 256, (24, 31, 3), dtype=np.uint8)
PILLOW_SEEDS = {"GIF": {}, "TIFF": {"compression": "tiff_adobe_deflate"}, "WEBP": {"lossless": True}, "PPM": {}}


def _pillow_encoded(fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(SEED_PHOTO).save(buffer, fmt, **options)
    return buffer.getvalue()


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def interlaced_png(pixels: np.ndarray) -> bytes:
    """An Adam7-interlaced PNG (neither OpenCV nor Pillow writes one) of 8- or 16-bit
    gray (H, W) or RGB (H, W, 3) pixels, every row unfiltered."""
    colour = 2 if pixels.ndim == 3 else 0
    big_endian = pixels.astype(pixels.dtype.newbyteorder(">"))
    rows = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in ADAM7 for row in big_endian[y0::dy, x0::dx]
                    if row.size)
    header = (pixels.shape[1], pixels.shape[0], 8 * pixels.itemsize, colour, 0, 0, 1)
    return png_with(header, image_data=zlib.compress(rows))


def _seeds() -> list[bytes]:
    photo = SEED_PHOTO[..., ::-1]
    return [cv2.imencode(ext, photo)[1].tobytes() for ext in (".png", ".jpg", ".bmp")] + [
        cv2.imencode(".png", photo[..., 0])[1].tobytes()] + [_pillow_encoded(f, **o) for f, o in PILLOW_SEEDS.items()] + [
        interlaced_png(SEED_PHOTO)]


SEEDS = _seeds()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real encoded image, truncated and/or with bytes overwritten."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def _decoded_or_refused(data: bytes) -> None:
    try:
        rgb = decode_rgb(data)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and rgb.size > 0


@FUZZ
@given(mutated_images())
def test_decoding_mutated_images(data: bytes) -> None:
    _decoded_or_refused(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_decoding_arbitrary_bytes(data: bytes) -> None:
    _decoded_or_refused(data)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_fuzz_seeds_decode_like_pillow(seed: int) -> None:
    """Each format the fuzz targets start from decodes to Pillow's pixels (JPEG within
    rounding): the header readers refuse nothing real."""
    data = SEEDS[seed]
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)
    assert np.abs(decode_rgb(data).astype(float) - expected).mean() <= (1.0 if data[:2] == b"\xff\xd8" else 0.0)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 7), (9, 17, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fuzz_interlaced_png_sizes_decode_like_pillow(shape: tuple[int, ...], dtype: type) -> None:
    """Adam7 passes that are empty for small images: the inflated size is computed per pass."""
    pixels = np.random.default_rng(7).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    decoded = decode_rgb(interlaced_png(pixels))
    expected = (pixels.astype(np.uint32) * 255 + 32767) // 65535 if dtype == np.uint16 else pixels
    assert np.array_equal(decoded, np.broadcast_to(expected.reshape(*shape[:2], -1), decoded.shape))


PNG_DEPTHS = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 255])


@st.composite
def png_headers(draw: st.DrawFn) -> bytes:
    """A PNG whose IHDR fields are anything (each CRC right), with rows of zeros sized
    for a valid header of those fields, sometimes one byte off."""
    width, height = draw(st.sampled_from([0, 1, 3, 1_000_001, 2**31, 2**32 - 1])), draw(st.integers(0, 4))
    fields = (width, height, draw(PNG_DEPTHS), draw(st.integers(0, 7)), draw(st.integers(0, 2)),
              draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    row = 1 + (min(width, 64) * 64 + 7) // 8
    rows = bytes(max(0, min(height * row, 4096) + draw(st.sampled_from([0, 0, -1, 1]))))
    return png_with(fields, image_data=zlib.compress(rows))


@FUZZ
@given(png_headers())
def test_fuzz_png_headers_never_let_libpng_print(capfd: pytest.CaptureFixture, data: bytes) -> None:
    """Whatever the IHDR says, libpng adds no line of its own to stderr."""
    _decoded_or_refused(data)
    assert capfd.readouterr().err == ""


SMALL_BUDGET = 24 * 31


@st.composite
def resized_headers(draw: st.DrawFn) -> bytes:
    """A GIF, BMP or PNM seed whose header declares another size."""
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["gif", "gif frame", "bmp", "pnm"]))
    if kind.startswith("gif"):
        data = bytearray(_pillow_encoded("GIF"))
        at = 6 if kind == "gif" else data.index(b"\x2c", 13 + 3 * 256) + 5
        data[at:at + 4] = struct.pack("<HH", width, height)
    elif kind == "bmp":
        data = bytearray(SEEDS[2])
        data[18:26] = struct.pack("<ii", width, draw(st.sampled_from([height, -height])))
    else:
        data = bytearray(b"P6\n%d %d\n255\n" % (width, height) + bytes(3 * width * height))
    return bytes(data)


@FUZZ
@given(resized_headers())
def test_fuzz_decoded_images_stay_within_max_pixels(data: bytes) -> None:
    """Whatever size a header declares, nothing over max_pixels comes out of a decoder."""
    try:
        rgb = decode_rgb(data, max_pixels=SMALL_BUDGET)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert rgb.shape[0] * rgb.shape[1] <= SMALL_BUDGET


@FUZZ
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)))
def test_arrays_become_model_input_or_image_error(array: np.ndarray) -> None:
    try:
        prepared = model_input(array, SPEC)
    except ImageError:
        return
    assert prepared.x.shape == (3, 32, 32) and prepared.x.dtype == np.float32 and np.isfinite(prepared.x).all()


@FUZZ
@given(hnp.arrays(np.float32, st.sampled_from([(3, 32, 32), (1, 3, 32, 32)]),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_preprocessed_tensors_with_any_values(tensor: np.ndarray) -> None:
    try:
        prepared = model_input(tensor, SPEC)
    except ImageError as exc:
        assert not np.isfinite(tensor).all() and "NaN or infinite" in str(exc)
        return
    assert np.array_equal(prepared.x, tensor.reshape(3, 32, 32))


@FUZZ
@given(st.binary(max_size=4096) | mutated_images())
def test_onnx_protobuf_scan_never_fails_otherwise(data: bytes) -> None:
    try:
        external_data_locations(data)
    except (MalformedModel, RecursionError):
        pass


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, batch_size=8)


@FUZZ
@given(st.binary(max_size=512))
def test_model_bytes_are_refused_with_model_error(data: bytes) -> None:
    with pytest.raises(ModelError):
        Explainer(data, prepare=False)


ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                      st.text(max_size=8), st.lists(st.integers(), max_size=2))


@FUZZ
@given(st.dictionaries(st.sampled_from(["mu", "fusion", "layer", "rise_masks", "rise_cells", "rise_p", "seed",
                                        "ada_rule", "unknown"]), ANY_VALUE, max_size=4),
       st.sampled_from(["sise", "ada-sise", "gradcam", "rise", "score-cam", "lime", ""]))
def test_method_options_are_checked(options: dict, method: str) -> None:
    try:
        records = checked(method, options)
    except OptionError as exc:
        assert "\n" not in str(exc)
        return
    for record in records:
        assert getattr(record, "mu", 0) >= 0 and getattr(record, "rise_masks", 1) >= 1
        assert 0 < getattr(record, "rise_p", 1) <= 1


@FUZZ
@given(st.sampled_from(CAM_METHODS), ANY_VALUE, ANY_VALUE)
def test_explain_arguments_end_in_a_map_or_a_sise_error(explainer: Explainer, method: str, target: object,
                                                        layer: object) -> None:
    image = np.full((20, 30, 3), 120, np.uint8)
    try:
        result = explainer.explain(image, target=target, method=method, layer=layer)  # type: ignore[arg-type]
    except SiseError as exc:
        assert "\n" not in str(exc)
        return
    assert result.saliency.shape == (20, 30)


ARG = st.one_of(st.sampled_from(["--target", "--top-k", "--mu", "--batch-size", "--method", "--layer", "--seed",
                                 "--rise-masks", "--threads", "--max-seconds", "--fusion", "--json", "-1", "0",
                                 "nan", "1e400", "967,968", "sise", "x.png"]), st.text(max_size=6))


@FUZZ
@given(st.lists(ARG, max_size=8))
def test_cli_parsing_exits_2_or_parses(words: list[str]) -> None:
    try:
        build_parser().parse_args(["explain", "model.onnx", "photo.png", *words])
    except UsageError as exc:  # main() prints it as one line, exit code 2
        assert "\n" not in str(exc) and str(exc).endswith(" --help)")
    except SystemExit as exc:
        assert exc.code == 0 and any(w.startswith(("-h", "--h")) for w in words)


@FUZZ
@given(st.text(max_size=20))
def test_cli_value_parsers(text: str) -> None:
    import argparse

    for parse in (class_ids, size_pair, triple):
        try:
            parse(text)
        except argparse.ArgumentTypeError as exc:
            assert "\n" not in str(exc)


METADATA = ModelInfo(model_name="m", input=InputSpec(224, 224), output_kind="logits", num_classes=3,
                     taps=(Tap("block0", "layer2:input", 256, 56, 56, 4, "activation/block0", "gradient/block0"),),
                     labels=("a", "b", "c"), verification={"scores": 1e-6}).to_json()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [prefix] + [p for key, value in node.items() for p in _paths(value, (*prefix, key))]
    if isinstance(node, list):
        return [prefix] + [p for i, value in enumerate(node) for p in _paths(value, (*prefix, i))]
    return [prefix]


@st.composite
def mutated_metadata(draw: st.DrawFn) -> str:
    """The metadata of a valid model with values replaced, fields deleted or added."""
    document = json.loads(METADATA)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(document)[1:]))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
        if not _paths(document)[1:]:
            break
    return json.dumps(document)


def _metadata_read_or_refused(text: str) -> None:
    try:
        info = ModelInfo.from_json(text)
    except ModelError as exc:
        assert "\n" not in str(exc)
        return
    spec = info.input
    assert all(type(v) is int and v >= 1 for v in (spec.height, spec.width, spec.channels, info.num_classes))
    assert all(type(v) is float and np.isfinite(v) for v in (spec.scale, *spec.mean, *spec.std))
    assert all(type(v) is int for tap in info.taps for v in (tap.channels, tap.height, tap.width, tap.reduction))
    assert all(type(label) is str for label in info.labels)


@FUZZ
@given(mutated_metadata())
def test_fuzz_mutated_metadata_is_read_or_refused(text: str) -> None:
    _metadata_read_or_refused(text)


DEEP_JSON = st.tuples(st.integers(2_000, 200_000), st.sampled_from("[{")).map(
    lambda depth_open: ('{"a":' if depth_open[1] == "{" else "[") * depth_open[0] + "0" + "}]"[depth_open[1] == "["]
    * depth_open[0])


@FUZZ
@given(JSON_VALUES.map(json.dumps) | st.text(max_size=64) | DEEP_JSON)
def test_fuzz_any_json_as_metadata_is_read_or_refused(text: str) -> None:
    _metadata_read_or_refused(text)
