"""The plain-ONNX preparation cache is keyed on everything that makes the model: the
graph file and its external weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnx_sise import Explainer

sys.path.insert(0, str(Path(__file__).parent / "preparation"))
from handwritten_models import SIZE, build  # noqa: E402


def test_fault_new_external_weights_beside_the_same_graph_are_prepared_again(tmp_path: Path) -> None:
    source = build(tmp_path / "classifier.onnx", external=True, seed=0)
    (tmp_path / "new").mkdir()
    retrained = build(tmp_path / "new" / "classifier.onnx", external=True, seed=1)
    assert retrained.read_bytes() == source.read_bytes(), "the same graph file, other weights"
    cache = tmp_path / "cache"
    first = Explainer(source, cache_dir=cache)
    (tmp_path / "classifier.weights").write_bytes((tmp_path / "new" / "classifier.weights").read_bytes())
    second = Explainer(source, cache_dir=cache)
    assert second.prepared is not None and first.prepared is not None
    assert not second.prepared.cached and second.prepared.path != first.prepared.path
    image = np.random.default_rng(2).normal(size=(3, SIZE, SIZE)).astype(np.float32)
    (logits,) = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"image": image[None]})
    expected = np.exp(logits[0] - logits[0].max())
    np.testing.assert_allclose(second.model.scores(image), expected / expected.sum(), rtol=1e-4, atol=1e-6)
    assert Explainer(source, cache_dir=cache).prepared.cached  # type: ignore[union-attr]


def test_bad_input_cache_entries_that_are_broken_or_links_are_prepared_again(tmp_path: Path, lite0_path: Path) -> None:
    source = build(tmp_path / "classifier.onnx", seed=0)
    cache = tmp_path / "cache"
    entry = Explainer(source, cache_dir=cache).prepared.path  # type: ignore[union-attr]
    entry.write_bytes(entry.read_bytes()[:1000])  # a truncated entry (a disk fault, a copy cut short)
    again = Explainer(source, cache_dir=cache)
    assert again.prepared is not None and not again.prepared.cached and again.info.num_classes == 5
    entry.unlink()
    entry.symlink_to(lite0_path)  # a link to another model is never trusted as the preparation
    linked = Explainer(source, cache_dir=cache)
    assert linked.prepared is not None and not linked.prepared.cached
    assert not entry.is_symlink() and linked.info.num_classes == 5
