from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_sise.errors import ImageError
from onnx_sise.image_io import read_rgb, to_model_input
from onnx_sise.model_info import InputSpec


def test_read_rgb_gives_rgb_order(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "red.png"), rgb[..., ::-1])
    loaded = read_rgb(tmp_path / "red.png")
    assert loaded.shape == (4, 5, 3) and (loaded[..., 0] == 200).all() and not loaded[..., 1:].any()


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((6, 7), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((6, 7, 4), 90, np.uint8))
    assert read_rgb(tmp_path / "gray.png").shape == (6, 7, 3)
    assert read_rgb(tmp_path / "rgba.png").shape == (6, 7, 3)


@pytest.mark.parametrize("make,fragment", [
    (lambda p: None, "image not found"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg"), "cannot decode"),
])
def test_bad_images_raise_image_error(tmp_path: Path, make, fragment: str) -> None:  # noqa: ANN001
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageError, match=fragment):
        read_rgb(path)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocessing_resizes_whole_and_normalises(layout: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(10, 20, 3), dtype=np.uint8)
    spec = InputSpec(height=10, width=20, layout=layout, mean=(127.0,) * 3, std=(128.0,) * 3)
    x = to_model_input(rgb, spec)
    expected = (rgb.astype(np.float32) - 127) / 128
    np.testing.assert_allclose(x, expected.transpose(2, 0, 1) if layout == "NCHW" else expected, rtol=1e-6)
    bgr = to_model_input(rgb, InputSpec(height=10, width=20, color="BGR", scale=1 / 255))
    np.testing.assert_allclose(bgr[0], rgb[..., 2] / 255.0, rtol=1e-6)
    assert to_model_input(rgb, InputSpec(height=7, width=9)).shape == (3, 7, 9)

