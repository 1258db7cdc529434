"""UCAG (arXiv 2312.14201): patch geometry, the fold of eq. 6, and the whole refinement of
Grad-CAM against a NumPy reference written from eq. 1-6 on EfficientNet-Lite0."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import reference

from onnx_sise import Explainer, OptionError, TimeLimitError
from onnx_sise.methods.ucag import confidence_weights, duplication_count, fold, patch_grid

SIZES = [(224, 224), (223, 301), (301, 223), (97, 131)]


@pytest.mark.parametrize("size", SIZES)
def test_default_patches_cover_every_pixel(size: tuple[int, int]) -> None:
    grid = patch_grid(size)  # n = 6, rho = 0.555
    ph, pw = grid.patch
    assert (ph, pw) == (round(0.555 * size[0]), round(0.555 * size[1]))
    assert len(grid.corners) == 36
    assert grid.rows[0] == 0 and grid.rows[-1] + ph == size[0]
    assert grid.cols[0] == 0 and grid.cols[-1] + pw == size[1]
    covered = np.zeros(size, bool)
    for y, x in grid.corners:
        assert 0 <= y and y + ph <= size[0] and 0 <= x and x + pw <= size[1]
        covered[y:y + ph, x:x + pw] = True
    assert covered.all()
    assert duplication_count(grid).min() >= 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("value", [0.37, 5.0])
def test_fold_is_exact_on_a_constant_explainer(size: tuple[int, int], value: float) -> None:
    grid = patch_grid(size)
    folded = fold(np.full((36, *grid.patch), value, np.float32), grid)
    assert folded.shape == size
    np.testing.assert_allclose(folded, value, rtol=1e-6)


def test_fold_averages_by_the_duplication_count() -> None:
    grid = patch_grid((10, 10), n=2, rho=0.6)  # patches of 6 at 0 and 4: rows/cols 4-5 covered twice
    maps = np.stack([np.full((6, 6), v, np.float32) for v in (1, 2, 3, 4)])
    folded = fold(maps, grid)
    assert folded[0, 0] == 1 and folded[0, 9] == 2 and folded[9, 0] == 3 and folded[9, 9] == 4
    assert folded[0, 4] == pytest.approx(1.5) and folded[4, 4] == pytest.approx(2.5)


def test_confidence_weights_are_exp_of_softmax() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(confidence_weights(softmax[:, 0]), np.exp(softmax[:, 0]))


def _reference_ucag_gradcam(explainer: Explainer, x: np.ndarray, target: int, n: int, rho: float) -> np.ndarray:
    """Eq. 1-6 with Grad-CAM (AOP eq. 1, 3) written directly: crops, bilinear rescale,
    per-patch CAM from the gradient call, exp(softmax) weights, rescale back, average."""
    c, h, w = x.shape
    ph, pw = round(rho * h), round(rho * w)
    starts_y = [round(i * (h - ph) / (n - 1)) for i in range(n)]
    starts_x = [round(i * (w - pw) / (n - 1)) for i in range(n)]
    onehot = np.zeros(1000, np.float32)
    onehot[target] = 1.0
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for y in starts_y:
        for x0 in starts_x:
            patch = reference.upsample_bilinear(x[:, y:y + ph, x0:x0 + pw], h, w)
            psi = explainer.model.batch_scores(patch[None], [target])[0, 0]
            deepest = explainer.model.block_features(patch, np.zeros(1000, np.float32), onehot)[-1]
            a, g = deepest.activations.astype(np.float64), deepest.gradients.astype(np.float64)
            cam = np.maximum(np.tensordot(g.mean(axis=(1, 2)), a, axes=1), 0)
            weighted = reference.upsample_bilinear((cam * np.exp(psi))[None].astype(np.float32), ph, pw)[0]
            total[y:y + ph, x0:x0 + pw] += weighted
            count[y:y + ph, x0:x0 + pw] += 1
    return total / count


def test_ucag_gradcam_matches_the_numpy_reference(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "coffee.png")
    from onnx_sise.methods import METHODS, Context, checked

    ctx = Context(model=explainer.model, image=x, targets=[967], batch=np.empty((8, *x.shape), np.float32))
    (result,) = METHODS["ucag-gradcam"].explain(ctx, *checked("ucag-gradcam", {"ucag_n": 3}))
    expected = _reference_ucag_gradcam(explainer, x, 967, 3, 0.555)
    assert result.saliency.shape == (224, 224)
    np.testing.assert_allclose(result.saliency, expected, rtol=1e-3, atol=1e-4 * expected.max())
    assert ctx.passes == 9
    assert len(result.details["patch_scores"]) == 9 and result.details["alpha"] == pytest.approx(224 / 124, 1e-3)


def test_refined_map_stays_on_the_cup_and_options_are_checked(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path)
    refined = explainer.explain(photos / "coffee.png", method="ucag-gradcam")
    assert refined.masks_used["patches"] == 36 and refined.saliency.shape == (400, 600)
    top, left, bottom, right = 20, 145, 250, 430
    assert refined.saliency[top:bottom, left:right].sum() / refined.saliency.sum() > 0.5
    with pytest.raises(OptionError, match="ucag_n"):
        explainer.explain(photos / "coffee.png", method="ucag-gradcam", ucag_n=1)
    with pytest.raises(OptionError, match="ucag_rho"):
        explainer.explain(photos / "coffee.png", method="ucag-gradcam", ucag_rho=1.5)


def test_bad_input_ucag_memory_does_not_grow_with_n(lite0_path: Path, photos: Path) -> None:
    """n = 32 is 1024 patches (616 MB as model inputs): they are made a batch at a time,
    so the NumPy peak of the call (tracemalloc sees NumPy's arrays) stays that of a batch."""
    explainer = Explainer(lite0_path, batch_size=16)
    rgb = np.ascontiguousarray(cv2.imread(str(photos / "coffee.png"))[..., ::-1])
    tracemalloc.start()
    try:
        with pytest.raises(TimeLimitError):
            explainer.explain(rgb, method="ucag-gradcam", ucag_n=32, max_seconds=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20, f"NumPy peak {peak >> 20} MiB"
