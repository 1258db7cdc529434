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
