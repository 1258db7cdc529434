"""explain_dataset and `python -m onnx_sise batch` on a local Ray of 2 CPUs (conftest):
the maps of 40 images bit-identical to a sequential Explainer.explain, one manifest row per
image, error rows for the broken files, a run killed mid-way (one actor, then the driver,
by SIGKILL) finished by a re-run that explains every image exactly once and leaves no
partial file, and a second run that does nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pq = pytest.importorskip("pyarrow.parquet")

from onnx_sise import Explainer  # noqa: E402
from onnx_sise.batch import explain_dataset  # noqa: E402
from onnx_sise.batch.outputs import ROWS_FOLDER, Outputs  # noqa: E402
from onnx_sise.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
BROKEN = ("empty.png", "text.jpg", "truncated.png", "huge.png")  # of the forty_images fixture (conftest.py)
ACTOR = "MapWorker(MapBatches(ExplainWorker))"
REPOSITORY = Path(__file__).resolve().parents[3]


def images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `out` but the manifest: (mtime_ns, content)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*")
            if p.is_file() and not p.name.startswith("manifest.")}


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".onnx_sise-")]


def check_manifest(out: Path, method: str, folder: Path) -> list[dict]:
    rows = pq.read_table(out / f"manifest.{method}.parquet").to_pylist()
    keys = [r["key"] for r in rows]
    assert sorted(keys) == sorted(p.relative_to(folder).as_posix() for p in images_of(folder))
    assert len(set(keys)) == len(keys) == 40
    assert {r["key"] for r in rows if r["status"] == "error"} == set(BROKEN)
    assert all(r["error"] and r["target"] is None for r in rows if r["status"] == "error")
    assert all(r["error"] is None and r["passes"] is not None and r["label"] for r in rows if r["status"] == "ok")
    return rows


def test_forty_images_match_sequential_explain(lite0_path: Path, forty_images: Path, ray_cluster: str,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = explain_dataset(lite0_path, forty_images, out, "gradcam", threads=1)
    assert (summary.images, summary.explained, summary.errors, summary.skipped) == (40, 36, 4, 0)
    assert summary.plan is not None and summary.plan.actors == 2 and summary.plan.threads == 1
    rows = check_manifest(out, "gradcam", forty_images)
    sequential = Explainer(lite0_path, threads=1)
    outputs = Outputs(out, "gradcam")
    for row in rows:
        if row["status"] != "ok":
            continue
        expected = sequential.explain(forty_images / row["key"], method="gradcam")
        npy, png = outputs.maps(row["key"])
        saliency = np.load(npy)
        assert saliency.dtype == np.float32 and saliency.tobytes() == expected.saliency.tobytes(), row["key"]
        assert (row["target"], row["label"], row["score"]) == (expected.target, expected.label, expected.score)
        assert png.stat().st_size > 0
    assert not temporaries(out)

    before = snapshot(out)
    again = explain_dataset(lite0_path, forty_images, out, "gradcam", threads=1)
    assert (again.explained, again.errors, again.skipped, again.plan) == (0, 0, 40, None)
    assert snapshot(out) == before
    check_manifest(out, "gradcam", forty_images)


def test_sise_through_batch_matches_explain(lite0_path: Path, photos: Path, ray_cluster: str, tmp_path: Path) -> None:
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# one photo\n{photos / 'coffee.png'}\n")
    out = tmp_path / "out"
    summary = explain_dataset(lite0_path, manifest, out, "sise", threads=1, actors=1)
    assert (summary.explained, summary.errors) == (1, 0)
    expected = Explainer(lite0_path, threads=1).explain(photos / "coffee.png", method="sise")
    key = str(photos / "coffee.png").lstrip("/")
    saliency = np.load(Outputs(out, "sise").maps(key)[0])
    assert saliency.tobytes() == expected.saliency.tobytes()
    row, = pq.read_table(out / "manifest.sise.parquet").to_pylist()
    assert (row["target"], row["passes"], row["status"]) == (expected.target, expected.passes, "ok")


def test_a_ray_dataset_of_bytes_is_explained(lite0_path: Path, photos: Path, ray_cluster: str,
                                             tmp_path: Path) -> None:
    import ray

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("coffee.png", "rocket.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    dataset = ray.data.read_binary_files(str(folder), include_paths=True)
    out = tmp_path / "out"
    summary = explain_dataset(lite0_path, dataset, out, "gradcam", threads=1)
    assert (summary.explained, summary.errors) == (2, 0)
    assert summary.plan is not None and summary.plan.actors == 1  # a CPU left for the dataset's reads
    sequential = Explainer(lite0_path, threads=1)
    for name in ("coffee.png", "rocket.jpg"):
        key = str(folder / name).lstrip("/")
        expected = sequential.explain(folder / name, method="gradcam").saliency
        assert np.load(Outputs(out, "gradcam").maps(key)[0]).tobytes() == expected.tobytes()


def actors_under(process: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in process.children(recursive=True):
        try:
            if ACTOR in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def wait_for(condition, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds}s for {what}"
        time.sleep(0.05)


def test_a_killed_run_is_finished_by_a_rerun(lite0_path: Path, forty_images: Path, ray_cluster: str,
                                             tmp_path: Path) -> None:
    """The driver joins the session's Ray; one of its actors is killed after 4 rows, the
    driver after 12 (or when it ends first). The re-run explains the rest once each."""
    out = tmp_path / "out"
    rows = out / ROWS_FOLDER / "rise"
    count = lambda: len(list(rows.glob("*.json"))) if rows.is_dir() else 0  # noqa: E731
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPOSITORY), str(REPOSITORY / "export"), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-m", "onnx_sise", "batch", str(lite0_path), str(forty_images),
                               "--out", str(out), "--method", "rise", "--rise-masks", "96", "--threads", "1",
                               "--address", ray_cluster], env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    me = psutil.Process()
    try:
        wait_for(lambda: count() >= 4 or driver.poll() is not None, 300, "4 rows")
        victims = actors_under(me)
        assert victims, "no actor process found"
        os.kill(victims[0].pid, signal.SIGKILL)
        wait_for(lambda: count() >= 12 or driver.poll() is not None, 300, "12 rows")
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    wait_for(lambda: not actors_under(me), 120, "the killed driver's actors to end")
    done_before = snapshot(out)
    assert 4 <= count() < 40, "the run was not killed mid-way"

    summary = explain_dataset(lite0_path, forty_images, out, "rise", threads=1, rise_masks=96)
    assert summary.skipped == sum(1 for k in done_before if k.startswith(ROWS_FOLDER))  # every image with a row
    assert summary.explained + summary.errors + summary.skipped == 40
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in done_before} == done_before  # nothing done twice
    assert not temporaries(out)
    rows_written = check_manifest(out, "rise", forty_images)
    assert all(Outputs(out, "rise").maps(r["key"])[0].is_file() for r in rows_written if r["status"] == "ok")

    again = explain_dataset(lite0_path, forty_images, out, "rise", threads=1, rise_masks=96)
    assert (again.explained, again.errors, again.skipped) == (0, 0, 40)
    assert snapshot(out) == after


def test_the_command_line(lite0_path: Path, photos: Path, ray_cluster: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "coffee.png").write_bytes((photos / "coffee.png").read_bytes())
    out = tmp_path / "out"
    assert main(["batch", str(lite0_path), str(folder), "--out", str(out), "--method", "gradcam"]) == 0
    assert "1 images: 1 explained, 0 errors, 0 done before" in capsys.readouterr().out
    assert Outputs(out, "gradcam").maps("coffee.png")[1].is_file()
    assert main(["batch", str(lite0_path), str(folder), "--out", str(folder), "--method", "gradcam"]) == 2
    assert "--out is the INPUT folder itself" in capsys.readouterr().err
    assert main(["batch", str(lite0_path), str(folder), "--out", str(out), "--actors", "0"]) == 2
    assert main(["batch", str(lite0_path), str(folder), "--out", str(out), "--actors", "9", "--threads", "1"]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_without_ray_the_command_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["batch", str(tmp_path / "m.onnx"), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "pip install 'onnx_sise[ray]'" in error and "\n" not in error


def test_an_output_folder_that_cannot_be_written_stops_the_run_with_one_line(
        lite0_path: Path, photos: Path, ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "coffee.png").write_bytes((photos / "coffee.png").read_bytes())
    out = tmp_path / "out"
    blocked = Outputs(out, "gradcam").row_path("coffee.png").parent
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the rows' folder goes")
    assert main(["batch", str(lite0_path), str(folder), "--out", str(out), "--method", "gradcam"]) == 2
    error = capsys.readouterr().err.strip()
    assert "the Ray run stopped" in error and "cannot create output directory" in error and "\n" not in error
    assert not Outputs(out, "gradcam").maps("coffee.png")[0].exists() and not temporaries(out)
