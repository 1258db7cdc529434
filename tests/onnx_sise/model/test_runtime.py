"""onnxruntime sessions opened from memory: a model with external weights runs without
its weights file, session settings are copied, and onnxruntime's errors become one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnx_sise.errors import ModelError
from onnx_sise.model.runtime import SHARED_OPTIONS, copied_options, first_line, open_session, providers_of


def external_weights_model(folder: Path) -> Path:
    """y = x + w, w (4 floats) stored in a weights file beside the model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "add.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="add.weights", size_threshold=0)
    return path


def test_fault_a_session_keeps_its_external_weights_when_the_file_goes(tmp_path: Path) -> None:
    path = external_weights_model(tmp_path)
    session = open_session(path, str(path), ort.SessionOptions(), ["CPUExecutionProvider"])
    (tmp_path / "add.weights").write_bytes(b"")
    (y,) = session.run(["y"], {"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(y, np.arange(4, dtype=np.float32) + 1)
    assert [name for name, _ in providers_of(session)] == ["CPUExecutionProvider"]


def test_bad_input_bytes_that_are_no_model() -> None:
    with pytest.raises(ModelError, match="^the model bytes is not a loadable ONNX model"):
        open_session(b"\x08\x07", "the model bytes", ort.SessionOptions(), ["CPUExecutionProvider"])


def test_copied_options_have_the_shared_settings() -> None:
    theirs = ort.SessionOptions()
    theirs.intra_op_num_threads, theirs.inter_op_num_threads = 3, 2
    theirs.enable_mem_pattern, theirs.log_severity_level = False, 1
    theirs.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options = copied_options(theirs)
    assert options is not theirs
    assert {name: getattr(options, name) for name in SHARED_OPTIONS} == {
        name: getattr(theirs, name) for name in SHARED_OPTIONS}


@pytest.mark.parametrize(("exc", "line"), [
    (RuntimeError("  first\nsecond"), "first"),
    (RuntimeError(""), "RuntimeError"),
    (ValueError("x" * 300), "x" * 200),
])
def test_first_line_of_an_error(exc: BaseException, line: str) -> None:
    assert first_line(exc) == line
