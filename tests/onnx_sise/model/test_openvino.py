"""provider="openvino": the masked passes in OpenVINO give onnxruntime's maps.

Tolerances (measured on Lite0 + coffee, benchmarks/RESULTS.md has the photo set):
- f32: the scores equal onnxruntime's within 1e-5 (measured 7e-7) and the normalised maps
  within 1e-3 (measured 1e-5): OpenVINO sums in another order, nothing more.
- bf16: an 8-bit mantissa moves the scores by up to ~1e-2, so the maps are compared by
  Pearson r >= 0.97 (measured 0.997 for SISE, 0.999 for RISE).
- the gradient call (OpenVINO f32 whatever the precision) equals onnxruntime's within 1e-4
  of each tap's largest gradient (measured 3e-6).
Skipped where openvino is not installed (the Makefile installs it for CI)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnx_sise import Explainer
from onnx_sise.errors import ModelError, OptionError
from onnx_sise.model.openvino import BF16_CAPABILITY
from onnx_sise.model.session import ExplainableModel

openvino = pytest.importorskip("openvino", reason="the optional openvino package is absent: "
                                                  "pip install 'onnx_sise[openvino]'")
HAS_BF16 = BF16_CAPABILITY in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic (AVX512_BF16 or AMX)")
METHODS = [("sise", {}), ("gradcam", {}), ("rise", {"rise_masks": 64})]


@pytest.fixture(scope="module")
def reference(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, threads=2, batch_size=16)


@pytest.fixture(scope="module")
def f32(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, provider="openvino", precision="f32", threads=2, batch_size=16)


@pytest.fixture(scope="module")
def coffee(photos: Path) -> str:
    return str(photos / "coffee.png")


def masked_inputs(explainer: Explainer, photo: str, count: int = 5) -> np.ndarray:
    x, _ = explainer.preprocess(photo)
    masks = np.random.default_rng(0).uniform(size=(count, 1, *x.shape[1:])).astype(np.float32)
    return x[None] * masks


def test_f32_scores_equal_the_scoring_graph_in_onnxruntime(f32: Explainer, lite0_path: Path, coffee: str) -> None:
    """The independent reference: the file's own graph in onnxruntime, asked for batch_scores only."""
    batch = masked_inputs(f32, coffee)
    session = ort.InferenceSession(str(lite0_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run([f32.info.graph.batch_scores], {f32.info.graph.masked_batch: batch})
    classes = list(range(f32.info.num_classes))
    np.testing.assert_allclose(f32.model.batch_scores(batch, classes), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", ["f32", "auto"])
def test_the_gradient_call_equals_onnxruntimes(precision: str, lite0_path: Path, reference: Explainer,
                                               coffee: str) -> None:
    """Per tap, activations and gradients of Psi_967 and of the logit y_968 at once (a
    staged file's gradient call stays in onnxruntime: model/scoring.py gradient_graph)."""
    model = ExplainableModel(lite0_path, provider="openvino", precision=precision, threads=2)
    assert model.openvino is not None
    assert (model.openvino.gradient is None) == (model.info.staged_gradient is not None)
    x, _ = reference.preprocess(coffee)
    w, u = np.zeros((2, reference.info.num_classes), np.float32)
    w[967], u[968] = 1, 1
    for ours, theirs in zip(model.block_features(x, w, u), reference.model.block_features(x, w, u)):
        for got, expected in ((ours.activations, theirs.activations), (ours.gradients, theirs.gradients)):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    logits, activations = model.logits_and_activations(x)
    expected_logits, _ = reference.model.logits_and_activations(x)
    np.testing.assert_allclose(logits, expected_logits, rtol=0, atol=1e-4 * np.abs(expected_logits).max())
    assert len(activations) == len(reference.info.taps)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "options"), METHODS, ids=[m for m, _ in METHODS])
def test_f32_maps_equal_onnxruntimes(method: str, options: dict, f32: Explainer, reference: Explainer,
                                     coffee: str) -> None:
    ours, theirs = (e.explain(coffee, target=967, method=method, **options) for e in (f32, reference))
    assert ours.passes == theirs.passes
    np.testing.assert_allclose(ours.saliency, theirs.saliency, rtol=0, atol=1e-3)


@pytest.mark.slow
@needs_bf16
@pytest.mark.parametrize(("method", "options"), METHODS, ids=[m for m, _ in METHODS])
def test_bf16_maps_correlate_with_onnxruntimes(method: str, options: dict, lite0_path: Path, reference: Explainer,
                                               coffee: str) -> None:
    bf16 = Explainer(lite0_path, provider="openvino", precision="bf16", threads=2, batch_size=16)
    assert bf16.model.scoring_precision == "bf16"
    ours, theirs = (e.explain(coffee, target=967, method=method, **options) for e in (bf16, reference))
    assert np.corrcoef(ours.saliency.ravel(), theirs.saliency.ravel())[0, 1] >= 0.97


def test_auto_is_bf16_exactly_where_the_cpu_has_it(lite0_path: Path) -> None:
    model = ExplainableModel(lite0_path, provider="openvino", precision="auto", threads=1)
    assert model.scoring_precision == ("bf16" if HAS_BF16 else "f32")
    assert ExplainableModel(lite0_path, provider="openvino", threads=1).scoring_precision == "f32"  # the default
    assert model.provider == "openvino" and model.session.get_providers() == ["CPUExecutionProvider"]


def test_threads_share_the_model_and_get_their_own_requests(f32: Explainer, coffee: str) -> None:
    """Infer requests are not thread-safe: concurrent calls must each get the scores of their own batch."""
    batches = [masked_inputs(f32, coffee, 3) * scale for scale in (1.0, 0.5, 0.25, 0.125)]
    expected = [f32.model.batch_scores(b, [967, 968]) for b in batches]
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(len(batches))}

    def score(i: int) -> None:
        for _ in range(3):
            got[i].append(f32.model.batch_scores(batches[i], [967, 968]))

    workers = [threading.Thread(target=score, args=(i,)) for i in range(len(batches))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i, runs in got.items():
        assert len(runs) == 3
        for scores in runs:
            np.testing.assert_array_equal(scores, expected[i])


@pytest.mark.parametrize(("settings", "error", "fragment"), [
    ({"provider": "openvino", "precision": "fp64"}, OptionError, "precision must be one of auto, f32, bf16"),
    ({"precision": "bf16"}, OptionError, "precision bf16 is an OpenVINO precision: give provider openvino too"),
    ({"provider": "openvino", "io_binding": True}, OptionError, "io_binding is onnxruntime's"),
    ({"provider": "openvino", "scoring_model": "variant.onnx"}, OptionError, "takes no scoring model"),
    ({"provider": "openvino-tpu"}, ModelError, "provider 'openvino-tpu' is not one of cpu, cuda, tensorrt, openvino, openvino-gpu"),
])
def test_bad_settings_get_one_line(settings: dict, error: type, fragment: str, lite0_path: Path) -> None:
    with pytest.raises(error) as raised:
        Explainer(lite0_path, **settings)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.skipif("GPU" in openvino.Core().available_devices, reason="OpenVINO finds a GPU here")
def test_the_gpu_plugin_without_a_gpu_says_so(lite0_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^OpenVINO finds no GPU device here \(it has CPU[^\n]*\): use provider "
                                         r"openvino \(the CPU\)"):
        Explainer(lite0_path, provider="openvino-gpu")


@needs_bf16
def test_bf16_on_a_device_without_it_is_refused(lite0_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without bf16, played by a Core that lists only FP32 (the real one has BF16 here)."""
    real = openvino.Core

    class Fp32Only(real):  # type: ignore[misc, valid-type]
        def get_property(self, device: str, name: str):  # noqa: ANN202
            return ["FP32"] if name == "OPTIMIZATION_CAPABILITIES" else super().get_property(device, name)

    monkeypatch.setattr(openvino, "Core", Fp32Only)
    with pytest.raises(OptionError, match="precision bf16 needs a device with bfloat16 arithmetic"):
        Explainer(lite0_path, provider="openvino", precision="bf16")
    assert Explainer(lite0_path, provider="openvino", precision="auto").model.scoring_precision == "f32"


def test_without_openvino_the_error_names_the_extra(lite0_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'onnx_sise\[openvino\]'"):
        Explainer(lite0_path, provider="openvino")


def test_the_command_line_explains_with_openvino(lite0_path: Path, coffee: str, reference: Explainer,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--provider openvino --precision f32 writes onnxruntime's Grad-CAM map (the gradient
    call in OpenVINO f32); a bad --precision is one line and exit code 2."""
    from onnx_sise.cli import main

    args = ["explain", str(lite0_path), coffee, "--method", "gradcam", "--target", "967", "--threads", "2",
            "--out", str(tmp_path)]
    assert main([*args, "--provider", "openvino", "--precision", "f32"]) == 0
    expected = reference.explain(coffee, target=967, method="gradcam").saliency
    np.testing.assert_allclose(np.load(tmp_path / "coffee.gradcam.npy"), expected, rtol=0, atol=1e-3)
    capsys.readouterr()
    assert main([*args, "--provider", "openvino", "--precision", "fp64"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
