"""evaluation/stability.py: the measures against NumPy/SciPy formulas on hand-made maps,
the shift and back-shift bookkeeping on a shift-equivariant toy, and `evaluate
--stability` end to end on one photo with Grad-CAM against maps made by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import stats

from onnx_sise import Explainer
from onnx_sise.cli import main
from onnx_sise.errors import OptionError
from onnx_sise.evaluation.stability import (
    BORDER,
    SHIFT,
    aligned,
    jpeg_reencoded,
    pearson,
    sensitivity,
    shifted,
    spearman,
    stability,
)
from onnx_sise.images.decode import read_rgb


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_measures_are_the_textbook_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((12, 15))
    b = a + 0.3 * rng.random((12, 15))
    a[:4] = 0.0  # ties, as a gated SISE map has
    b[:, :3] = 0.5
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert sensitivity(a, b) == pytest.approx(np.sqrt(((b - a) ** 2).sum() / (a ** 2).sum()), abs=1e-12)


def test_constant_maps() -> None:
    flat, ramp = np.full((4, 4), 0.5), np.arange(16.0).reshape(4, 4)
    assert pearson(flat, flat) == spearman(flat, flat) == 1.0
    assert pearson(flat, ramp) == spearman(ramp, flat) == 0.0
    assert sensitivity(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0
    assert sensitivity(np.zeros((3, 3)), np.ones((3, 3))) == float("inf")


def box_filter(image: np.ndarray) -> np.ndarray:
    """A shift-equivariant toy 'method': the 3 x 3 mean of the grey image, edges repeated."""
    grey = image.astype(np.float64).mean(axis=2)
    padded = np.pad(grey, 1, mode="edge")
    return sum(padded[dy:dy + grey.shape[0], dx:dx + grey.shape[1]] for dy in range(3) for dx in range(3)) / 9


def test_a_shifted_photos_map_moved_back_is_the_original_map() -> None:
    photo = np.random.default_rng(3).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    moved = shifted(photo, SHIFT)
    np.testing.assert_array_equal(moved[SHIFT[0]:, SHIFT[1]:], photo[:-SHIFT[0], :-SHIFT[1]])
    np.testing.assert_array_equal(moved[0, 1:], photo[0, :-1])  # the edge row repeated
    reference, back = aligned(box_filter(photo), box_filter(moved), SHIFT)
    assert reference.shape == (20 - 2 * BORDER, 24 - 2 * BORDER)
    np.testing.assert_allclose(back, reference, atol=1e-12)
    _, not_back = aligned(box_filter(photo), box_filter(moved), (0, 0))
    assert np.abs(not_back - reference).max() > 1  # without moving back the maps differ
    with pytest.raises(ValueError, match="must cover the shift"):
        aligned(reference, reference, (3, 0))


def test_jpeg_reencoding_changes_the_photo_a_little() -> None:
    photo = cv2.GaussianBlur(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8), (7, 7), 2)
    again = jpeg_reencoded(photo)
    assert again.shape == photo.shape and again.dtype == np.uint8
    error = np.sqrt(np.mean((again.astype(float) - photo) ** 2))
    assert 0 < error < 8


def test_bad_input_changes_are_refused(lite0_path: Path, photos: Path) -> None:
    with pytest.raises(OptionError, match="changes must be a non-empty list"):
        stability(Explainer(lite0_path), photos / "coffee.png", "gradcam", changes=["rotate"])


def test_evaluate_stability_end_to_end(lite0_path: Path, photos: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    """The CLI's figures against Grad-CAM maps made by hand: the photo resized both ways,
    JPEG re-encoded through Pillow-free cv2 calls, and moved one pixel with NumPy."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photos / "coffee.png", images / "coffee.png")
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"images": [{"file": "coffee.png", "target": 967,
                                                   "boxes": [[170, 15, 420, 305]]}]}))
    out = tmp_path / "out"
    code = main(["evaluate", str(lite0_path), "--images", str(images), "--annotations", str(annotations),
                 "--methods", "gradcam", "--metrics", "ebpg", "--stability", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "max-sensitivity" in printed and (out / "stability.md").read_text().strip() in printed
    found = json.loads((out / "stability.json").read_text())["gradcam"]["images"][0]["changes"]

    explainer = Explainer(lite0_path)
    rgb = read_rgb(photos / "coffee.png")
    area = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR)
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    jpeg_area = cv2.resize(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1], (224, 224), interpolation=cv2.INTER_AREA)
    moved = np.pad(area, ((1, 0), (1, 0), (0, 0)), mode="edge")[:224, :224]

    def gradcam(image: np.ndarray) -> np.ndarray:
        return explainer.explain(np.ascontiguousarray(image), 967, method="gradcam").saliency.astype(np.float64)

    reference = gradcam(area)[2:-2, 2:-2]
    expected = {"resize": gradcam(linear)[2:-2, 2:-2], "jpeg": gradcam(jpeg_area)[2:-2, 2:-2],
                "shift": gradcam(moved)[3:-1, 3:-1]}
    for change, changed in expected.items():
        assert found[change]["pearson"] == pytest.approx(np.corrcoef(reference.ravel(), changed.ravel())[0, 1], abs=1e-6)
        assert found[change]["spearman"] == pytest.approx(
            stats.spearmanr(reference.ravel(), changed.ravel()).statistic, abs=1e-6)
        assert found[change]["sensitivity"] == pytest.approx(
            np.linalg.norm(changed - reference) / np.linalg.norm(reference), rel=1e-5)
