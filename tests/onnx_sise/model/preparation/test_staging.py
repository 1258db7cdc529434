"""The staged gradient sub-graph (preparation/staging.py): a call for tap k runs the
backward down to tap k only and gives what the full call gives there; R rows of class
weights give what R one-row calls give; weights over ranks give what weights over the
classes of that rank give."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from handwritten_models import CLASSES, SIZE, build
from previous_export import run_as_of

from onnx_sise import Explainer
from onnx_sise.model.preparation import prepare_onnx

ON = np.array(True)
# The last commit whose preparation wrote one gradient graph for every tap and one row of weights.
OLD_LAYOUT_COMMIT = "811b3af"


@pytest.fixture(scope="module", params=["NCHW", "NHWC"])
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[ort.InferenceSession,
                                                                                                  Path, object]:
    folder = tmp_path_factory.mktemp(f"staging_{request.param}")
    source = build(folder / "model.onnx", layout=request.param, softmax=request.param == "NHWC")
    info = prepare_onnx(source, folder / "model.sise.onnx")
    session = ort.InferenceSession(str(folder / "model.sise.onnx"), providers=["CPUExecutionProvider"])
    return session, folder / "model.sise.onnx", info


def _image(info: object) -> np.ndarray:
    shape = (1, 3, SIZE, SIZE) if info.input.layout == "NCHW" else (1, SIZE, SIZE, 3)
    return np.random.default_rng(4).normal(size=shape).astype(np.float32)


def _weights() -> np.ndarray:
    """Three rows: one-hot, one-hot, a mixture."""
    rows = np.zeros((3, CLASSES), np.float32)
    rows[0, 1] = rows[1, 3] = 1.0
    rows[2] = np.random.default_rng(5).uniform(-1, 1, CLASSES)
    return rows


def test_a_call_from_tap_k_gives_the_full_calls_gradients_from_k_and_skips_the_rest(prepared) -> None:
    session, _, info = prepared
    names = [t.gradient_output for t in info.taps]
    x, w = _image(info), _weights()
    full = session.run(names, {"image": x, "target_weights": w, "logit_weights": w[::-1] * 0.1,
                               "gradient/enabled": ON})
    for k in range(len(names) + 1):
        part = session.run(names, {"image": x, "target_weights": w, "logit_weights": w[::-1] * 0.1,
                                   "gradient/enabled": ON, "gradient/from_tap": np.array(k)})
        for index, (whole, piece, tap) in enumerate(zip(full, part, info.taps)):
            if index >= k:
                np.testing.assert_array_equal(piece, whole)
            else:
                assert piece.shape == (0, tap.channels, tap.height, tap.width)


def test_rows_of_class_weights_give_what_one_row_calls_give(prepared) -> None:
    session, _, info = prepared
    names = ["scores", *(t.gradient_output for t in info.taps)]
    x, w = _image(info), _weights()
    u = np.random.default_rng(6).uniform(-1, 1, (1, CLASSES)).astype(np.float32)  # one row: broadcast
    together = session.run(names, {"image": x, "target_weights": w, "logit_weights": u, "gradient/enabled": ON})
    assert [g.shape[0] for g in together[1:]] == [3] * len(info.taps)
    for r in range(3):
        alone = session.run(names, {"image": x, "target_weights": w[r:r + 1], "logit_weights": u,
                                    "gradient/enabled": ON})
        np.testing.assert_array_equal(together[0], alone[0])
        for many, one in zip(together[1:], alone[1:]):
            np.testing.assert_allclose(many[r:r + 1], one, rtol=1e-6, atol=1e-9)


def test_weights_over_ranks_weigh_the_classes_of_those_ranks(prepared) -> None:
    session, _, info = prepared
    names = [t.gradient_output for t in info.taps]
    x = _image(info)
    (scores,) = session.run(["scores"], {"image": x, "gradient/enabled": ON})
    order = np.argsort(-scores[0], kind="stable")
    ranks = np.zeros((2, CLASSES), np.float32)
    ranks[0, 0] = ranks[1, 1] = 1.0  # the top class, the second
    by_rank = session.run(names, {"image": x, "logit_weights": ranks, "gradient/enabled": ON,
                                  "gradient/by_rank": ON})
    classes = np.zeros_like(ranks)
    classes[0, order[0]] = classes[1, order[1]] = 1.0
    by_class = session.run(names, {"image": x, "logit_weights": classes, "gradient/enabled": ON})
    for a, b in zip(by_rank, by_class):
        np.testing.assert_array_equal(a, b)


def _kernels_run(path: Path, feeds: dict[str, np.ndarray]) -> list[str]:
    """The op type of each kernel onnxruntime ran in one call (its profile)."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    return [e["args"].get("op_name") for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def test_the_deepest_taps_call_runs_no_backward_of_the_shallower_blocks(prepared) -> None:
    """The model's deepest tap feeds a global pool and a Gemm: its backward has no
    ConvTranspose (conv2's backward is the next level's), which the full call runs."""
    _, path, info = prepared
    feeds = {"image": _image(info), "target_weights": _weights(), "gradient/enabled": ON}
    deepest = _kernels_run(path, {**feeds, "gradient/from_tap": np.array(len(info.taps) - 1)})
    every = _kernels_run(path, feeds)
    assert "ConvTranspose" in every and "ConvTranspose" not in deepest
    assert len(deepest) < len(every)


def _prepared_before_the_levels(source: Path, out: Path, folder: Path) -> Path:
    """`source` prepared by the preparation of OLD_LAYOUT_COMMIT (read from git history, run in a subprocess)."""
    code = "import sys; from onnx_sise.model.preparation import prepare_onnx; prepare_onnx(sys.argv[1], sys.argv[2])"
    done = run_as_of(OLD_LAYOUT_COMMIT, ["onnx_sise"], folder, code, str(source), str(out), timeout=600)
    if done is None:
        pytest.skip("the repository's history is not here (a shallow clone)")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_file_prepared_before_the_levels_is_explained_as_the_new_one(tmp_path: Path) -> None:
    source = build(tmp_path / "model.onnx")
    old = Explainer(_prepared_before_the_levels(source, tmp_path / "old.sise.onnx", tmp_path / "old"))
    prepare_onnx(source, tmp_path / "new.sise.onnx")
    new = Explainer(tmp_path / "new.sise.onnx")
    assert not old.model.staged and new.model.staged
    x = _image(old.info)[0]
    ranks = np.zeros((2, CLASSES), np.float32)
    ranks[0, 0] = ranks[1, 1] = 1.0
    for from_tap in range(len(new.info.taps)):
        a = old.model.gradients(x, ranks, from_tap=from_tap, by_rank=True)
        b = new.model.gradients(x, ranks, from_tap=from_tap, by_rank=True)
        for row_a, row_b in zip(a.features, b.features, strict=True):
            for fa, fb in zip(row_a[from_tap:], row_b[from_tap:], strict=True):
                np.testing.assert_allclose(fa.gradients, fb.gradients, rtol=1e-5, atol=1e-7)
    for method in ("gradcam", "sise"):
        maps = [e.explain_targets(x, top_k=2, method=method) for e in (old, new)]
        assert [m.target for m in maps[0]] == [m.target for m in maps[1]]
        for m_old, m_new in zip(*maps):
            np.testing.assert_allclose(m_old.saliency, m_new.saliency, atol=1e-5)


def test_a_file_prepared_before_the_levels_gets_its_gradient_call_from_openvino(tmp_path: Path) -> None:
    """Provider openvino cuts the gradient graph out of files made before the levels (the
    staged ones keep onnxruntime's call) and runs it in f32: the same gradients."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    old = _prepared_before_the_levels(build(tmp_path / "model.onnx"), tmp_path / "old.sise.onnx", tmp_path / "old")
    cpu, openvino = Explainer(old), Explainer(old, provider="openvino", precision="f32")
    assert openvino.model.openvino is not None and openvino.model.openvino.gradient is not None
    x = _image(cpu.info)[0]
    weights = _weights()[:1]
    a, b = (e.model.gradients(x, weights) for e in (cpu, openvino))
    np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=1e-5 * np.abs(a.scores).max())
    for fa, fb in zip(a.features[0], b.features[0], strict=True):
        np.testing.assert_allclose(fb.gradients, fa.gradients, rtol=0, atol=1e-4 * np.abs(fa.gradients).max())
        np.testing.assert_allclose(fb.activations, fa.activations, rtol=0, atol=1e-4 * np.abs(fa.activations).max())
