"""The overlay/map pair `explain` writes: replaced as a whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from onnx_sise.errors import OutputError
from onnx_sise.images.overlay import write_outputs


def test_fault_a_failing_rename_leaves_the_old_pair_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file system refuses the second rename (EPERM, as for another user's file in a
    sticky folder, which root cannot stage): the first file gets its old content back."""
    png, npy = tmp_path / "a.gradcam.png", tmp_path / "a.gradcam.npy"
    rgb = np.full((8, 8, 3), 100, np.uint8)
    write_outputs(rgb, np.zeros((8, 8), np.float32), png, npy)
    old = {p: p.read_bytes() for p in (png, npy)}
    real_replace, calls = os.replace, []

    def second_rename_refused(source: str, target: str) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise PermissionError(1, "Operation not permitted")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", second_rename_refused)
    with pytest.raises(OutputError, match="Operation not permitted"):
        write_outputs(rgb, np.ones((8, 8), np.float32), png, npy)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in (png, npy)} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [npy.name, png.name]


def test_overlay_keeps_the_photo_where_the_map_is_zero_and_colours_by_inferno() -> None:
    """Opacity alpha * sqrt(S) over a perceptually uniform colormap, checked pixel by pixel
    against the formula: the photo untouched where S = 0, blended by alpha where S = 1."""
    import cv2

    from onnx_sise.images.overlay import overlay

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    saliency = rng.random((37, 53)).astype(np.float32)
    saliency[:10] = 0.0
    saliency[-1] = 1.0
    out = overlay(rgb, saliency, alpha=0.6)
    assert np.array_equal(out[:10], rgb[:10])
    inferno = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1]
    heat = inferno[np.round(saliency * 255).astype(int)].astype(np.float64)
    a = 0.6 * np.sqrt(saliency.astype(np.float64))[..., None]
    expected = np.round(rgb * (1 - a) + heat * a)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1
    assert tuple(inferno[255]) != tuple(inferno[0])  # the top of the scale is not the photo's black
