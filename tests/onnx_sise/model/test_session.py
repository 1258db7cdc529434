"""The session owns its weights and refuses what is not a model file, through real
onnxruntime sessions in real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import onnxruntime as ort
import pytest

from onnx_sise import Explainer
from onnx_sise.errors import ModelError
from onnx_sise.model.session import FALLBACKS, PROVIDERS

# Explains, truncates the external weights, explains again: the same map or one line.
TRUNCATE_BETWEEN_CALLS = textwrap.dedent("""
    import sys
    import numpy as np
    from onnx_sise import Explainer, SiseError
    model, weights = sys.argv[1:3]
    explainer = Explainer(model, batch_size=8)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    before = explainer.explain(image, method="gradcam").saliency
    with open(weights, "r+b") as handle:
        handle.truncate(0)
    try:
        after = explainer.explain(image, method="gradcam").saliency
    except SiseError as exc:
        print("error:", exc)
    else:
        print("same" if np.array_equal(before, after) else "different")
""")


@pytest.fixture(scope="module")
def lite0_with_external_weights(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import onnx

    path = tmp_path_factory.mktemp("external") / "lite0.sise.onnx"
    onnx.save(onnx.load(str(lite0_path)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="lite0.weights", size_threshold=1024)
    return path


def test_fault_external_weights_truncated_after_the_explainer_was_made(lite0_with_external_weights: Path,
                                                                      tmp_path: Path) -> None:
    model = tmp_path / "lite0.sise.onnx"
    weights = tmp_path / "lite0.weights"
    model.write_bytes(lite0_with_external_weights.read_bytes())
    weights.write_bytes((lite0_with_external_weights.parent / "lite0.weights").read_bytes())
    done = subprocess.run([sys.executable, "-c", TRUNCATE_BETWEEN_CALLS, str(model), str(weights)],
                          capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    assert done.returncode == 0, f"exit {done.returncode} (negative: killed by a signal): {done.stderr[-2000:]}"
    assert done.stdout.strip() == "same", done.stdout


def test_bad_input_external_weights_missing_or_cut(lite0_with_external_weights: Path, tmp_path: Path) -> None:
    model = tmp_path / "lite0.sise.onnx"
    model.write_bytes(lite0_with_external_weights.read_bytes())
    with pytest.raises(ModelError, match="its external data file 'lite0.weights' is missing") as raised:
        Explainer(model, prepare=False)
    (tmp_path / "lite0.weights").write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError, match="lies outside its weights file") as raised:
        Explainer(model, prepare=False)
    assert "\n" not in str(raised.value)


def test_bad_input_fifo_as_scoring_model(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "scoring.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is not a regular file"):
        Explainer(lite0_path, scoring_model=fifo)
    done = subprocess.run([sys.executable, "-m", "onnx_sise", "explain", str(lite0_path), str(photos / "coffee.png"),
                           "--out", str(tmp_path / "out"), "--scoring-model", str(fifo)],
                          capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "is not a regular file" in lines[0], done.stderr


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_providers_missing_from_onnxruntime_are_named_in_one_line(lite0_path: Path, provider: str) -> None:
    """The GPU providers sit behind the same switch; where this onnxruntime lacks one
    (the CPU wheel), the error names what is missing and what to install."""
    wanted = [PROVIDERS[provider], *FALLBACKS.get(provider, ())]
    missing = [name for name in wanted if name not in ort.get_available_providers()]
    if not missing:
        pytest.skip(f"this onnxruntime has {', '.join(wanted)}")
    with pytest.raises(ModelError, match=f"no {missing[0]}.*onnx_sise\\[gpu\\]") as caught:
        Explainer(lite0_path, provider=provider)
    assert "\n" not in str(caught.value)
