"""The bad-input corpus (tests/bad_inputs.py) through the Python API and the CLI: the
documented error class and message, or the documented conversion; exit code 2 and one
line on stderr from the CLI; no traceback; no file left behind."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import CASES, Case

from onnx_sise import Explainer, SiseError
from onnx_sise.images.overlay import write_outputs
from onnx_sise.images.sources import rgb_of

CLI_CASES = [c for c in CASES if c.cli is not None]


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, batch_size=16)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if not p.is_dir()} if folder.exists() else set()


def made(case: Case, folder: Path, photos: Path, lite0: Path) -> object:
    folder.mkdir(exist_ok=True)
    return case.make(folder, photos, lite0) if case.kind == "model" else case.make(folder, photos)


def run_api(case: Case, source: object, explainer: Explainer, lite0: Path, cache: Path) -> object:
    options = dict(case.options)
    method = options.pop("method", "gradcam")
    if case.kind == "model":
        return Explainer(source, cache_dir=cache)  # type: ignore[arg-type]
    if case.kind == "output":
        saliency = np.zeros((4, 4), np.float32)
        return write_outputs(np.zeros((4, 4, 3), np.uint8), saliency, Path(source) / "a.png", Path(source) / "a.npy")
    if {"batch_size", "provider", "precision"} & options.keys():  # the Explainer's own options
        return Explainer(lite0, **options)  # type: ignore[arg-type]
    if "top_k" in options:
        return explainer.explain_targets(source, top_k=options["top_k"], method=method)
    if "targets" in options:
        return explainer.explain_targets(source, options["targets"], method=method)
    return explainer.explain(source, method=method, **options)


def within(seconds: float, call: Callable[..., object], *args: object) -> object:
    """call(*args) in a worker thread: its result or its exception, or a failure when it
    is still running after `seconds` (a hang)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds:g} s: the call hangs")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def test_the_corpus_is_large_and_every_case_documented() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    assert all(c.fragment for c in CASES) and all(c.error is not None or c.check is not None for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_api(case: Case, explainer: Explainer, lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    source = made(case, tmp_path / "in", photos, lite0_path)
    before = files_under(tmp_path)
    if case.error is None:
        result = run_api(case, source, explainer, lite0_path, tmp_path / "cache")
        case.check(result, source)
    else:
        with pytest.raises(SiseError) as raised:
            within(case.within, run_api, case, source, explainer, lite0_path, tmp_path / "cache")
        assert type(raised.value) is case.error, f"{type(raised.value).__name__}: {raised.value}"
        message = str(raised.value)
        assert case.fragment in message and "\n" not in message, message
    assert files_under(tmp_path) == before, "the API wrote files"


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli(case: Case, lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    source = made(case, tmp_path / "in", photos, lite0_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    before = files_under(tmp_path)
    args = case.cli(str(lite0_path), str(source), str(photos / "coffee.png"), str(out), str(cache))
    done = subprocess.run([sys.executable, "-m", "onnx_sise", *args], capture_output=True, text=True,
                          timeout=case.within, cwd=tempfile.gettempdir())
    assert "Traceback" not in done.stderr, done.stderr
    if case.error is None:
        assert done.returncode == 0, done.stderr
        stem = Path(str(source)).stem
        written = files_under(tmp_path) - before
        assert written == {out / f"{stem}.gradcam.png", out / f"{stem}.gradcam.npy"}
        assert np.load(out / f"{stem}.gradcam.npy").shape == rgb_of(source).shape[:2]
    else:
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr
        assert (case.cli_fragment or case.fragment) in lines[0], lines[0]
        assert files_under(tmp_path) == before, "no output or cache file may be left behind"
