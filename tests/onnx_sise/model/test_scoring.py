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


def test_a_staged_file_or_one_without_the_gradient_switch_has_no_gradient_graph(lite0_path: Path) -> None:
    """The staged gradient's levels read the call's from_tap and by_rank: onnxruntime runs
    them (only the levels asked for), so no gradient graph is cut for OpenVINO."""
    model, info = loaded(lite0_path)
    assert info.staged_gradient is not None and gradient_graph(model, info) is None
    del model.graph.node[:]
    assert gradient_graph(model, info) is None
