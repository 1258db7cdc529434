"""Property-based fuzzing (hypothesis) of the entry points that take untrusted input:
image decoding (bytes, mutated real PNG/JPEG/BMP files), in-memory arrays, ONNX bytes,
method options and the command line's parsing. The only outcomes allowed are a result
or the documented SiseError (argparse's usage exit for the CLI), never another exception.

CI runs a few examples each (ONNX_SISE_FUZZ_EXAMPLES, default 40); a longer run:
    ONNX_SISE_FUZZ_EXAMPLES=20000 pytest tests/onnx_sise/test_fuzz.py
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx_sise import Explainer, ImageError, ModelError, OptionError, SiseError
from onnx_sise.cli import UsageError, build_parser, class_ids, size_pair, triple
from onnx_sise.explainer import checked_options
from onnx_sise.image_io import decode_rgb
from onnx_sise.image_sources import model_input
from onnx_sise.model_files import MalformedModel, external_data_locations
from onnx_sise.model_info import InputSpec

EXAMPLES = int(os.environ.get("ONNX_SISE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SPEC = InputSpec(height=32, width=32)


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    return [cv2.imencode(ext, photo)[1].tobytes() for ext in (".png", ".jpg", ".bmp")] + [
        cv2.imencode(".png", photo[..., 0])[1].tobytes()]


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
        opts = checked_options(method, options)
    except OptionError as exc:
        assert "\n" not in str(exc)
        return
    assert opts.mu >= 0 and opts.rise_masks >= 1 and 0 < opts.rise_p <= 1


@FUZZ
@given(st.sampled_from(["gradcam", "gradcam++", "wgradcam"]), ANY_VALUE, ANY_VALUE)
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
