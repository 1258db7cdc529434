"""An Explainer held by a serving process: threads, memory over many calls, determinism,
cancellation, models from bytes or beside another session, no files, no prints.
All on the real EfficientNet-Lite0 and real photos."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import pytest
from PIL import Image

from onnx_sise import CancelledError, CancelToken, Explainer, TimeLimitError
from onnx_sise.images.decode import read_rgb

# Calls of the memory-growth test; raise it for a soak run (README, "Tests for production").
SOAK_CALLS = int(os.environ.get("ONNX_SISE_SOAK_CALLS", "200"))
WARM_UP_CALLS = 20
# RSS may move by allocator noise of a few hundred kB; a leak of a single 224 x 224
# float32 map per call would add 36 MB over 180 calls, a photo-sized map far more.
RSS_GROWTH_LIMIT = 16 * 2**20


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, batch_size=8)


@pytest.fixture(scope="module")
def photo_arrays(photos: Path) -> dict[str, np.ndarray]:
    return {name: read_rgb(photos / f"{name}.png") for name in ("coffee", "chelsea")}


# (photo, method, options): every method, on two photos, five with masked passes.
TASKS = [
    ("coffee", "sise", {"mu": 0.3}), ("chelsea", "ada-sise", {}),
    ("coffee", "rise", {"rise_masks": 96, "seed": 1}), ("chelsea", "rise", {"rise_masks": 96, "seed": 2}),
    ("coffee", "score-cam", {"layer": "block1"}), ("chelsea", "gradcam++", {}),
    ("coffee", "wgradcam", {}), ("chelsea", "gradcam", {}),
]


def test_eight_threads_on_one_explainer_give_the_sequential_maps(explainer: Explainer,
                                                                 photo_arrays: dict[str, np.ndarray]) -> None:
    def run(task: tuple[str, str, dict]) -> np.ndarray:
        name, method, options = task
        return explainer.explain(photo_arrays[name], method=method, **options).saliency

    sequential = [run(task) for task in TASKS]
    start = threading.Barrier(len(TASKS))

    def together(task: tuple[str, str, dict]) -> np.ndarray:
        start.wait()
        return run(task)

    with ThreadPoolExecutor(max_workers=len(TASKS)) as pool:
        concurrent = list(pool.map(together, TASKS))
    for task, alone, shared in zip(TASKS, sequential, concurrent):
        assert np.array_equal(alone, shared), f"{task}: max |diff| {np.abs(alone - shared).max()}"
    assert all(m.max() > 0 for m in sequential)


def test_repeated_calls_do_not_grow_memory(explainer: Explainer, photos: Path,
                                           photo_arrays: dict[str, np.ndarray]) -> None:
    """RSS after SOAK_CALLS explanations (array, path and bytes inputs in turn) stays
    within RSS_GROWTH_LIMIT of its value after the warm-up."""
    encoded = (photos / "chelsea.png").read_bytes()
    inputs = [photo_arrays["coffee"], photos / "chelsea.png", encoded]
    process = psutil.Process()
    for i in range(WARM_UP_CALLS):
        explainer.explain(inputs[i % 3], method="gradcam")
    settled = process.memory_info().rss
    for i in range(SOAK_CALLS):
        result = explainer.explain(inputs[i % 3], method="gradcam")
    grown = process.memory_info().rss - settled
    assert result.target == 285 and grown < RSS_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.1f} MiB"


def _peak_traced(call) -> int:  # noqa: ANN001
    call()  # warm-up: first-call allocations are not the explanation's
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_is_independent_of_photo_size_and_mask_count(explainer: Explainer) -> None:
    """Beyond the photo (the caller's) and the returned photo-sized map, the peak of an
    explanation is the same for a 300 x 400 and a 2000 x 3000 photo, and for 32 and 256
    RISE masks (batches of 8): the photo is resized once and masks are streamed."""
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 256, size, dtype=np.uint8) for size in ((300, 400, 3), (2000, 3000, 3)))
    beyond_map = [_peak_traced(lambda: explainer.explain(photo, method="gradcam")) - photo.shape[0] * photo.shape[1] * 4
                  for photo in (small, large)]
    assert abs(beyond_map[1] - beyond_map[0]) < 2 * 2**20, beyond_map
    masks = [_peak_traced(lambda: explainer.explain(small, method="rise", rise_masks=n)) for n in (32, 256)]
    assert masks[1] < 1.25 * masks[0], masks


def test_sise_is_bit_identical_across_calls_and_processes(explainer: Explainer, lite0_path: Path, photos: Path,
                                                          tmp_path: Path) -> None:
    first = explainer.explain(photos / "coffee.png", mu=0.3).saliency
    assert np.array_equal(first, explainer.explain(photos / "coffee.png", mu=0.3).saliency)
    script = ("import sys, numpy as np; from onnx_sise import Explainer; e = Explainer(sys.argv[1], batch_size=8); "
              "np.save(sys.argv[3], e.explain(sys.argv[2], mu=0.3).saliency)")
    done = subprocess.run([sys.executable, "-c", script, str(lite0_path), str(photos / "coffee.png"),
                           str(tmp_path / "other.npy")], capture_output=True, text=True, timeout=600,
                          cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr
    assert np.array_equal(first, np.load(tmp_path / "other.npy"))


def test_rise_is_reproducible_for_a_seed(explainer: Explainer, photo_arrays: dict[str, np.ndarray]) -> None:
    maps = [explainer.explain(photo_arrays["coffee"], method="rise", rise_masks=64, seed=s).saliency
            for s in (7, 7, 8)]
    assert np.array_equal(maps[0], maps[1]) and not np.array_equal(maps[0], maps[2])


def test_cancel_from_another_thread_and_max_seconds(explainer: Explainer, photo_arrays: dict[str, np.ndarray]) -> None:
    # 100,000 RISE masks would run for many minutes here: both stops come long before.
    token = CancelToken()
    timer = threading.Timer(0.5, token.cancel)
    timer.start()
    with pytest.raises(CancelledError, match="explanation cancelled after"):
        explainer.explain(photo_arrays["coffee"], method="rise", rise_masks=100_000, cancel=token)
    timer.join()
    with pytest.raises(TimeLimitError, match="stopped at max_seconds=0.5"):
        explainer.explain(photo_arrays["coffee"], method="rise", rise_masks=100_000, max_seconds=0.5)
    with pytest.raises(CancelledError, match="after 0 masked passes"):
        explainer.explain(photo_arrays["coffee"], cancel=token)  # a cancelled token stays cancelled
    assert explainer.explain(photo_arrays["coffee"], method="gradcam", max_seconds=600).target == 967


@pytest.mark.parametrize("method", ["sigcam", "ucag-gradcam"])
def test_max_seconds_stops_the_iterative_and_patch_methods(explainer: Explainer, photo_arrays: dict[str, np.ndarray],
                                                           method: str) -> None:
    with pytest.raises(TimeLimitError, match="stopped at max_seconds=0.2"):
        explainer.explain(photo_arrays["coffee"], method=method, max_seconds=0.2)


def test_io_bound_sise_stops_at_max_seconds(lite0_path: Path, photo_arrays: dict[str, np.ndarray]) -> None:
    bound = Explainer(lite0_path, io_binding=True)
    with pytest.raises(TimeLimitError, match="stopped at max_seconds=0.3"):
        bound.explain(photo_arrays["coffee"], max_seconds=0.3)


def test_every_input_kind_gives_the_same_map(explainer: Explainer, photos: Path) -> None:
    path = photos / "chelsea.png"
    reference = explainer.explain(path, method="gradcam").saliency
    rgb = read_rgb(path)
    for image in (rgb, path.read_bytes(), str(path), Image.open(path)):
        assert np.array_equal(explainer.explain(image, method="gradcam").saliency, reference)
    x, size = explainer.preprocess(rgb)
    tensor_map = explainer.explain(x[None], method="gradcam").saliency
    assert size == rgb.shape[:2] and tensor_map.shape == (224, 224)
    np.testing.assert_array_equal(tensor_map, explainer.explain(x, method="gradcam").saliency)


def test_models_from_bytes_and_beside_an_existing_session(explainer: Explainer, lite0_path: Path,
                                                          photo_arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True  # must not be copied: profiling writes files
    options.profile_file_prefix = str(tmp_path / "theirs")
    theirs = ort.InferenceSession(str(lite0_path), options, providers=["CPUExecutionProvider"])
    beside = Explainer.from_session_config(theirs, lite0_path, batch_size=8)
    copied = beside.model.session.get_session_options()
    assert copied.intra_op_num_threads == 1 and not copied.enable_profiling
    assert beside.model.session.get_providers() == theirs.get_providers()
    from_bytes = Explainer(lite0_path.read_bytes(), batch_size=8)
    reference = explainer.explain(photo_arrays["coffee"], method="sise", mu=0.3).saliency
    assert np.array_equal(from_bytes.explain(photo_arrays["coffee"], method="sise", mu=0.3).saliency, reference)
    np.testing.assert_allclose(beside.explain(photo_arrays["coffee"], method="gradcam").saliency,
                               explainer.explain(photo_arrays["coffee"], method="gradcam").saliency, atol=1e-4)
    theirs.end_profiling()
    assert [p.name.startswith("theirs") for p in tmp_path.iterdir()] == [True], "only their session profiles"


def test_explaining_writes_no_file_and_prints_nothing(explainer: Explainer, photos: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    photo = tmp_path / "photo.jpg"
    Image.open(photos / "chelsea.png").save(photo, quality=90)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("onnx_sise")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        explainer.explain(photo, method="ada-sise")
        explainer.explain(io.BytesIO(photo.read_bytes()).getvalue(), method="gradcam")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cwd", "photo.jpg"]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert any("masked passes" in r.getMessage() for r in records)
