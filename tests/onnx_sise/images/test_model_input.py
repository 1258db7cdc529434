from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnx_sise.errors import ImageError
from onnx_sise.images.model_input import model_input, resized_rgb
from onnx_sise.model.info import InputSpec


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocessing_resizes_whole_and_normalises(layout: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(10, 20, 3), dtype=np.uint8)
    spec = InputSpec(height=10, width=20, layout=layout, mean=(127.0,) * 3, std=(128.0,) * 3)
    prepared = model_input(rgb, spec)
    expected = (rgb.astype(np.float32) - 127) / 128
    np.testing.assert_allclose(prepared.x, expected.transpose(2, 0, 1) if layout == "NCHW" else expected, rtol=1e-6)
    assert prepared.photo_size == (10, 20)
    bgr = model_input(rgb, InputSpec(height=10, width=20, color="BGR", scale=1 / 255)).x
    np.testing.assert_allclose(bgr[0], rgb[..., 2] / 255.0, rtol=1e-6)
    smaller = model_input(rgb, InputSpec(height=7, width=9))
    assert smaller.x.shape == (3, 7, 9) and smaller.photo_size == (10, 20)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocessed_tensors_are_used_as_they_are(layout: str) -> None:
    spec = InputSpec(height=4, width=5, layout=layout)
    shape = (3, 4, 5) if layout == "NCHW" else (4, 5, 3)
    tensor = np.random.default_rng(1).standard_normal(shape)
    prepared = model_input(tensor[None], spec)
    assert prepared.x.dtype == np.float32 and prepared.photo_size == (4, 5)
    assert np.array_equal(prepared.x, tensor.astype(np.float32))
    with pytest.raises(ImageError, match="taken as a preprocessed model input and must have shape"):
        model_input(tensor[:, :2], spec)


@pytest.mark.parametrize(("resize", "interpolation"), [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)])
def test_the_resize_method_is_chosen(resize: str, interpolation: int) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    spec = InputSpec(height=16, width=20)
    expected = cv2.resize(rgb, (20, 16), interpolation=interpolation).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_allclose(model_input(rgb, spec, resize=resize).x, expected)
    np.testing.assert_array_equal(resized_rgb(rgb, spec, resize), cv2.resize(rgb, (20, 16), interpolation=interpolation))
    enlarged = cv2.resize(rgb, (60, 48), interpolation=cv2.INTER_LINEAR)  # "area" enlarges bilinearly too
    np.testing.assert_array_equal(resized_rgb(rgb, InputSpec(height=48, width=60), resize), enlarged)
    with pytest.raises(ValueError, match="resize must be one of"):
        resized_rgb(rgb, spec, "cubic")
