"""The session owns its weights and refuses what is not a model file, through real
onnxruntime sessions in real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from torch_reference import LITE0_TAP_MODULES, block_inputs_and_gradients

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


def _relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def test_a_gradient_call_from_each_tap_for_two_targets_matches_torch_autograd(lite0_path: Path, lite0_torch,
                                                                               photos: Path) -> None:
    """One call per starting tap k, two rows of class weights each (espresso, and a
    second class): the gradient of each target's Psi at every tap from k on equals torch
    autograd's (the export's tolerance), the taps before k are skipped."""
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "coffee.png")
    targets = [967, 504]
    references = [block_inputs_and_gradients(lite0_torch, LITE0_TAP_MODULES, x, t) for t in targets]
    rows = np.zeros((2, explainer.info.num_classes), np.float32)
    rows[[0, 1], targets] = 1.0
    taps = len(explainer.info.taps)
    for k in range(taps):
        call = explainer.model.gradients(x, rows, from_tap=k)
        assert len(call.features) == 2
        np.testing.assert_allclose(call.scores, references[0][0], rtol=1e-4, atol=1e-6)
        for row, (_, activations, gradients) in zip(call.features, references):
            assert row[:k] == [None] * k
            for features, a, g in zip(row[k:], activations[k:], gradients[k:]):
                assert _relative_l2(features.activations, a.numpy()) < 1e-4
                assert _relative_l2(features.gradients, g.numpy()) < 1e-2


def test_files_before_the_staged_gradient_graph_are_called_one_row_at_a_time(lite0_path: Path,
                                                                              photos: Path) -> None:
    """The path for files that take one row and every tap (no from_tap, no by_rank
    input) gives what the staged call gives: rows, weights over ranks, skipped taps."""
    staged, old = Explainer(lite0_path), Explainer(lite0_path)
    old.model.staged = False
    x, _ = staged.preprocess(photos / "chelsea.png")
    ranks = np.zeros((2, staged.info.num_classes), np.float32)
    ranks[0, 0] = ranks[1, 1] = 1.0
    zeros = np.zeros((1, staged.info.num_classes), np.float32)
    for from_tap in (0, len(staged.info.taps) - 1):
        a = staged.model.gradients(x, zeros, ranks, from_tap=from_tap, by_rank=True)
        b = old.model.gradients(x, zeros, ranks, from_tap=from_tap, by_rank=True)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-7)
        for row_a, row_b in zip(a.features, b.features, strict=True):
            for fa, fb in zip(row_a, row_b, strict=True):
                assert (fa is None) == (fb is None)
                if fa is not None:
                    np.testing.assert_allclose(fa.gradients, fb.gradients, rtol=1e-4,
                                               atol=1e-4 * float(np.abs(fb.gradients).max()))
    gradcam = staged.explain_targets(x, top_k=3, method="gradcam")
    assert [e.target for e in gradcam] == [e.target for e in old.explain_targets(x, top_k=3, method="gradcam")]
    assert [e.target for e in gradcam] == np.argsort(-staged.model.scores(x), kind="stable")[:3].tolist()
