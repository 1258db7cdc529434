"""The compiled kernels against their NumPy twins, OpenCV, PyTorch and scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import reference
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu

from onnx_sise import kernels

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@pytest.fixture(autouse=True)
def _skip_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_cuda") and kernels.cuda_device_count() == 0:
        pytest.skip("no CUDA device (the CUDA kernels are tested on a GPU machine)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src,dst", [((7, 7), (224, 224)), ((14, 10), (223, 97)), ((1, 1), (5, 9)),
                                     ((112, 112), (224, 224)), ((30, 40), (12, 17)), ((3, 5), (3, 5))])
def test_upsample_matches_numpy_cv2_and_torch(device: str, src: tuple, dst: tuple, rng: np.random.Generator) -> None:
    maps = rng.normal(size=(4, *src)).astype(np.float32)
    ours = kernels.upsample_bilinear(maps, *dst, device=device)
    np.testing.assert_allclose(ours, reference.upsample_bilinear(maps, *dst), atol=1e-5)
    if dst[0] >= src[0] and dst[1] >= src[1]:  # cv2 adds no antialiasing either way, but checks upsampling here
        via_cv2 = np.stack([cv2.resize(m, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR) for m in maps])
        np.testing.assert_allclose(ours, via_cv2, atol=1e-4)
    via_torch = F.interpolate(torch.from_numpy(maps)[:, None], size=dst, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, via_torch[:, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("count,dst", [(1, (224, 224)), (1, (700, 900)), (3, (400, 300))])
def test_upsample_gives_the_same_bits_on_one_thread_and_on_the_team(count: int, dst: tuple,
                                                                    rng: np.random.Generator) -> None:
    """Small work (below 2^18 outputs) stays on one thread, larger work is split by rows of
    every map: each map comes out as the map resized alone."""
    maps = rng.normal(size=(count, 9, 13)).astype(np.float32)
    together = kernels.upsample_bilinear(maps, *dst)
    np.testing.assert_allclose(together, reference.upsample_bilinear(maps, *dst), atol=1e-5)
    for m, out in zip(maps, together):
        np.testing.assert_array_equal(kernels.upsample_bilinear(m[None], *dst)[0], out)
    small = kernels.upsample_bilinear(maps, 20, 30)
    np.testing.assert_array_equal(kernels.upsample_bilinear(np.repeat(maps, 40, axis=0), 20, 30)[::40], small)


@pytest.mark.parametrize("device", DEVICES)
def test_minmax_normalize_reports_constant_maps(device: str, rng: np.random.Generator) -> None:
    maps = rng.normal(size=(6, 9, 11)).astype(np.float32)
    maps[1] = 0.0
    maps[3] = 4.5
    maps[4, 2, 2] = np.nan
    maps[5] *= 1e-30
    expected, expected_flags = reference.minmax_normalize(maps)
    flags = kernels.minmax_normalize(maps, device=device)
    np.testing.assert_array_equal(flags, expected_flags)
    assert flags.tolist() == [True, False, True, False, False, True]
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert maps[flags].min() == 0.0 and maps[flags].max() == pytest.approx(1.0)
    assert not maps[~flags].any()


def test_minmax_normalize_refuses_copies() -> None:
    with pytest.raises(TypeError):
        kernels.minmax_normalize(np.zeros((1, 2, 2), np.float64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_masked_batch_writes_into_caller_buffer(device: str, layout: str, rng: np.random.Generator) -> None:
    image = rng.normal(size=(3, 20, 24) if layout == "NCHW" else (20, 24, 3)).astype(np.float32)
    masks = rng.uniform(size=(5, 20, 24)).astype(np.float32)
    buffer = np.full((8, *image.shape), -7.0, np.float32)
    kernels.build_masked_batch(image, masks, buffer, layout, device=device)
    np.testing.assert_allclose(buffer[:5], reference.masked_batch(image, masks, layout), rtol=1e-6)
    assert (buffer[5:] == -7.0).all()


def test_masked_batch_rejects_small_buffer(rng: np.random.Generator) -> None:
    image = np.ones((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="out: expected"):
        kernels.build_masked_batch(image, np.ones((3, 4, 4), np.float32), np.empty((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="spatial size"):
        kernels.build_masked_batch(image, np.ones((1, 5, 4), np.float32), np.empty((2, 3, 4, 4), np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_accumulate_contributions_eq_10_11(device: str, rng: np.random.Generator) -> None:
    masks = rng.uniform(size=(7, 16, 13)).astype(np.float32)
    masks[2] = 0.0
    scores = rng.uniform(size=7).astype(np.float32)
    acc = np.full((16, 13), 0.25)
    kernels.accumulate_contributions(masks, scores, acc, device=device)
    np.testing.assert_allclose(acc, 0.25 + reference.contributions(masks, scores), rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["normal", "bimodal", "uniform", "two_values", "skewed", "tiny"])
def test_otsu_matches_skimage_within_one_bin(device: str, case: str, rng: np.random.Generator) -> None:
    values = {
        "normal": rng.normal(size=5000),
        "bimodal": np.concatenate([rng.normal(0, 1, 3000), rng.normal(6, 0.5, 1000)]),
        "uniform": rng.uniform(size=224 * 224),
        "two_values": np.repeat([0.0, 1.0], [10, 30]),
        "skewed": rng.exponential(size=3000) ** 3,
        "tiny": np.array([0.1, 0.2, 0.9]),
    }[case].astype(np.float32)
    ours = kernels.otsu_threshold(values, device=device)
    expected = threshold_otsu(values, nbins=256)
    bin_width = (values.max() - values.min()) / 256
    assert abs(ours - expected) <= bin_width * 1.0001


@pytest.mark.parametrize("device", DEVICES)
def test_otsu_of_constant_input_is_that_value(device: str) -> None:
    assert kernels.otsu_threshold(np.full(10, 3.5, np.float32), device=device) == 3.5


def test_otsu_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        kernels.otsu_threshold(np.array([0.0, np.inf, 1.0], np.float32))
    with pytest.raises(ValueError, match="at least one value"):
        kernels.otsu_threshold(np.array([], np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_fusion_cascade_matches_reference(device: str, gate: str, rng: np.random.Generator) -> None:
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    maps = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / s) + 0.05 * rng.uniform(size=(64, 64))
                     for cy, cx, s in [(0.5, 0.5, 0.2), (0.4, 0.5, 0.1), (0.45, 0.55, 0.05), (0.5, 0.5, 0.03)]])
    maps = (maps * np.array([3.0, 0.2, 10.0, 1.0])[:, None, None]).astype(np.float32)
    ours = kernels.fuse_cascade(maps, gate=gate, device=device)
    expected = reference.fuse_cascade(maps, gate=gate)
    assert ours.shape == (64, 64) and ours.min() == 0.0 and ours.max() == pytest.approx(1.0)
    # Otsu may land one histogram bin apart, which moves only pixels at the threshold.
    assert np.mean(np.abs(ours - expected) > 1e-4) < 0.01
    assert reference.pearson(ours, expected) > 0.999


def test_fusion_skips_constant_blocks(rng: np.random.Generator) -> None:
    maps = rng.uniform(size=(3, 16, 16)).astype(np.float32)
    maps[2] = 0.0
    np.testing.assert_allclose(kernels.fuse_cascade(maps), kernels.fuse_cascade(maps[:2]), atol=1e-6)
    assert not kernels.fuse_cascade(np.zeros((2, 4, 4), np.float32)).any()


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, h, w\)"):
        kernels.upsample_bilinear(np.zeros((4, 4), np.float32), 8, 8)
    with pytest.raises(ValueError, match="device must be"):
        kernels.upsample_bilinear(np.zeros((1, 4, 4), np.float32), 8, 8, device="tpu")
    with pytest.raises(ValueError, match="gate must be"):
        kernels.fuse_cascade(np.zeros((1, 4, 4), np.float32), gate="fuzzy")


def test_cuda_device_request_without_a_gpu_is_refused() -> None:
    if kernels.cuda_device_count() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="device='cuda'"):
        kernels.otsu_threshold(np.arange(4, dtype=np.float32), device="cuda")


@pytest.mark.parametrize("device", DEVICES)
def test_buffer_round_trip_and_columns(device: str, rng: np.random.Generator) -> None:
    matrix = rng.normal(size=(5, 11)).astype(np.float32)
    buffer = kernels.Buffer(matrix.nbytes + 16, device)
    assert buffer.nbytes == matrix.nbytes + 16 and buffer.device == device and buffer.address != 0
    buffer.upload(matrix)
    back = np.empty_like(matrix)
    buffer.download(back)
    np.testing.assert_array_equal(back, matrix)
    np.testing.assert_array_equal(buffer.download_columns(5, 11, [3, 0, 10]), matrix[:, [3, 0, 10]].T)
    buffer.zero()
    buffer.download(back)
    assert not back.any()
    with pytest.raises(ValueError, match="larger than the buffer"):
        buffer.upload(np.zeros(matrix.size + 5, np.float32))
    with pytest.raises(ValueError, match="column out of range"):
        buffer.download_columns(5, 11, [11])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_buffer_pipeline_matches_numpy(device: str, layout: str, rng: np.random.Generator) -> None:
    """Upsampling + min-max (eq. 7), masked batch and eq. 10-11 on Buffers, as onnxruntime's
    IO binding sees them, against the NumPy twins."""
    features = rng.normal(size=(4, 5, 6)).astype(np.float32)
    features[2] = 1.5
    image = rng.normal(size=(3, 20, 24) if layout == "NCHW" else (20, 24, 3)).astype(np.float32)
    weights = rng.uniform(size=4).astype(np.float32)
    buffers = {name: kernels.Buffer(size, device) for name, size in
               [("features", features.nbytes), ("masks", 4 * 20 * 24 * 4), ("flags", 4), ("image", image.nbytes),
                ("batch", 4 * image.nbytes), ("weights", weights.nbytes), ("acc", 20 * 24 * 8)]}
    buffers["features"].upload(features)
    buffers["image"].upload(image)
    buffers["weights"].upload(weights)
    buffers["acc"].zero()
    kernels.masks_from_features(buffers["features"], 4, 5, 6, 20, 24, buffers["masks"], buffers["flags"])
    kernels.masked_batch_into(buffers["image"], 3, 20, 24, layout, buffers["masks"], 4, buffers["batch"])
    kernels.accumulate_into(buffers["masks"], 4, 20, 24, buffers["weights"], buffers["acc"])
    masks, flags = np.empty((4, 20, 24), np.float32), np.empty(4, np.uint8)
    batch, acc = np.empty((4, *image.shape), np.float32), np.empty((20, 24))
    for name, array in [("masks", masks), ("flags", flags), ("batch", batch), ("acc", acc)]:
        buffers[name].download(array)
    expected_masks, expected_flags = reference.minmax_normalize(reference.upsample_bilinear(features, 20, 24))
    np.testing.assert_array_equal(flags.astype(bool), expected_flags)
    np.testing.assert_allclose(masks, expected_masks, atol=1e-5)
    np.testing.assert_allclose(batch, reference.masked_batch(image, expected_masks, layout), atol=1e-5)
    np.testing.assert_allclose(acc, reference.contributions(expected_masks, weights), rtol=1e-5, atol=1e-12)


def test_buffer_kernels_refuse_short_buffers() -> None:
    small, big = kernels.Buffer(16, "cpu"), kernels.Buffer(4096, "cpu")
    with pytest.raises(ValueError, match="masks: buffer of 16 bytes"):
        kernels.masks_from_features(big, 1, 2, 2, 8, 8, small, big)
    with pytest.raises(ValueError, match="layout must be"):
        kernels.masked_batch_into(big, 3, 2, 2, "CHW", big, 1, big)
