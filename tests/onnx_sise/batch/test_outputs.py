"""The files of a batch run: maps, rows and manifest, what counts as done, and the
temporary files a killed run leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx_sise.batch.outputs import COLUMNS, Outputs, remove_temporaries

pq = pytest.importorskip("pyarrow.parquet")


def row(key: str, status: str = "ok") -> dict:
    ok = status == "ok"
    return {"path": f"/in/{key}", "key": key, "method": "gradcam", "target": 967 if ok else None,
            "label": "espresso" if ok else None, "score": 0.5 if ok else None, "passes": 0 if ok else None,
            "seconds": 0.25, "status": status, "error": None if ok else "cannot decode it"}


def test_a_result_is_its_map_overlay_and_row(tmp_path: Path) -> None:
    outputs = Outputs(tmp_path, "gradcam")
    saliency = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    rgb = np.full((3, 4, 3), 100, np.uint8)
    assert outputs.row("sub/a.png") is None
    outputs.write_result(rgb, saliency, row("sub/a.png"))
    npy, png = outputs.maps("sub/a.png")
    assert (npy.name, png.name, npy.parent) == ("a.png.gradcam.npy", "a.png.gradcam.png", tmp_path / "sub")
    assert np.array_equal(np.load(npy), saliency)
    assert outputs.row("sub/a.png") == row("sub/a.png")
    npy.unlink()  # a map removed since: the image is to be explained again
    assert outputs.row("sub/a.png") is None


def test_error_rows_and_the_manifest(tmp_path: Path) -> None:
    outputs = Outputs(tmp_path, "gradcam")
    outputs.write_result(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.float32), row("b.png"))
    outputs.write_error(row("a.png", "error"))
    outputs.row_path("junk").parent.joinpath("junk.json").write_text("{not json")  # ignored
    assert outputs.row("a.png") == row("a.png", "error")
    assert outputs.write_manifest() == 2
    table = pq.read_table(outputs.manifest)
    assert table.column_names == list(COLUMNS)
    assert table.to_pylist() == [row("a.png", "error"), row("b.png")]


def test_a_row_of_another_key_or_shape_is_not_done(tmp_path: Path) -> None:
    outputs = Outputs(tmp_path, "gradcam")
    outputs.row_path("a.png").parent.mkdir(parents=True)
    outputs.row_path("a.png").write_text('{"key": "b.png"}')
    assert outputs.row("a.png") is None


def test_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in (".onnx_sise-ab12.tmp", "sub/.onnx_sise-cd34.old.tmp", "keep.png", "sub/.onnx_sise-keep.json"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_temporaries(tmp_path) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "keep.png", "sub/.onnx_sise-keep.json"]
