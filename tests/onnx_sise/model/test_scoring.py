"""The sub-graphs of an explainable ONNX cut out as models of their own: the scoring graph
gives the file's own batch_scores, the gradient graph exists exactly where the file has
its switch (its values against onnxruntime's: tests/onnx_sise/model/test_openvino.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnx_sise import Explainer
from onnx_sise.model.info import METADATA_KEY, ModelInfo
from onnx_sise.model.scoring import gradient_graph, scoring_graph


def loaded(path: Path) -> tuple[onnx.ModelProto, ModelInfo]:
    model = onnx.load(str(path))
    return model, ModelInfo.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])


def test_the_scoring_graph_alone_gives_the_files_scores(lite0_path: Path, photos: Path) -> None:
    model, info = loaded(lite0_path)
    alone = scoring_graph(model, info, str(lite0_path))
    assert [i.name for i in alone.graph.input] == [info.graph.masked_batch]
    assert not any(n.op_type == "If" for n in alone.graph.node)
    x, _ = Explainer(lite0_path).preprocess(photos / "coffee.png")
    batch = np.stack([x, 0.5 * x])
    names = [info.graph.batch_scores]
    (got,) = ort.InferenceSession(alone.SerializeToString()).run(names, {info.graph.masked_batch: batch})
    (expected,) = ort.InferenceSession(str(lite0_path)).run(names, {info.graph.masked_batch: batch})
    np.testing.assert_array_equal(got, expected)


def test_a_file_without_the_gradient_switch_has_no_gradient_graph(lite0_path: Path) -> None:
    model, info = loaded(lite0_path)
    assert gradient_graph(model, info) is not None
    del model.graph.node[:]
    assert gradient_graph(model, info) is None


def test_the_gradient_graph_alone_gives_the_files_gradients(lite0_path: Path, photos: Path) -> None:
    model, info = loaded(lite0_path)
    alone = gradient_graph(model, info)
    assert alone is not None and not any(n.op_type == "If" for n in alone.graph.node)
    names = info.graph
    x, _ = Explainer(lite0_path).preprocess(photos / "coffee.png")
    w, u = np.zeros((2, 1, info.num_classes), np.float32)
    w[0, 967], u[0, 968] = 1, 1
    feeds = {names.image: x[None], names.target_weights: w, names.logit_weights: u}
    outputs = [names.logits, *(t.activation_output for t in info.taps), *(t.gradient_output for t in info.taps)]
    got = ort.InferenceSession(alone.SerializeToString()).run(outputs, feeds)
    expected = ort.InferenceSession(str(lite0_path)).run(outputs, {**feeds, names.gradient_switch: np.array(True)})
    for name, a, b in zip(outputs, got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max(), err_msg=name)
