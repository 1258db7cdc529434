"""Plain ONNX classifiers built without our exporter, prepared and explained."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import pytest
from handwritten_models import CLASSES, SIZE, build, refusal_models
from onnx import numpy_helper

from onnx_sise.errors import ExportError
from onnx_sise.model.preparation import InputOverrides, prepare_onnx

VARIANTS = {
    "nhwc_softmax": dict(layout="NHWC", softmax=True, opset=17),
    "flatten_matmul_opset11": dict(head="flatten", opset=11),
    "tf2onnx_reshape_opset13": dict(head="dynamic_reshape", layout="NHWC", opset=13),
    "external_data_opset21": dict(opset=21, external=True),
    "fixed_batch_opset15": dict(dynamic_batch=False, softmax=True, opset=15),
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_prepared_model_scores_and_gradients_match_the_original(tmp_path: Path, name: str) -> None:
    spec = VARIANTS[name]
    source = build(tmp_path / f"{name}.onnx", **spec)
    info = prepare_onnx(source, tmp_path / "prepared.sise.onnx")
    assert info.input.layout == spec.get("layout", "NCHW") and (info.input.height, info.input.width) == (SIZE, SIZE)
    assert info.output_kind == ("probabilities" if spec.get("softmax") else "logits")
    assert [(t.channels, t.height) for t in info.taps] == [(8, 32), (8, 16), (16, 8)]

    original = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    prepared = ort.InferenceSession(str(tmp_path / "prepared.sise.onnx"), providers=["CPUExecutionProvider"])
    shape = (1, 3, SIZE, SIZE) if info.input.layout == "NCHW" else (1, SIZE, SIZE, 3)
    batch = np.random.default_rng(1).normal(size=(1 if not spec.get("dynamic_batch", True) else 3, *shape[1:]))
    batch = batch.astype(np.float32)
    (raw,) = original.run(None, {"image": batch})
    (psi,) = prepared.run(["batch_scores"], {"masked_batch": batch})
    np.testing.assert_allclose(psi, raw if spec.get("softmax") else _softmax(raw), rtol=1e-5, atol=1e-7)
    (logits,) = prepared.run(["logits"], {"image": batch[:1], "gradient/enabled": np.array(True)})
    np.testing.assert_allclose(logits, raw[:1], rtol=1e-5, atol=1e-6)

    # d Psi_c / d(last tap) against central finite differences of the original graph cut at that tap.
    target = int(np.argmax(psi[0]))
    weights = np.zeros((1, CLASSES), np.float32)
    weights[0, target] = 1
    activation, gradient = prepared.run(["activation/block2", "gradient/block2"],
                                        {"image": batch[:1], "target_weights": weights,
                                         "gradient/enabled": np.array(True)})
    head = _cut_at(source, tmp_path, "r2")
    directions = np.random.default_rng(2).normal(size=(3, *activation.shape)).astype(np.float32)
    eps = 1e-2
    for v in directions:
        up, down = (head.run(None, {"r2": (activation + s * eps * v).astype(np.float32)})[0] for s in (1, -1))
        up, down = (out if spec.get("softmax") else _softmax(out) for out in (up, down))
        numeric = (up[0, target] - down[0, target]) / (2 * eps)
        assert numeric == pytest.approx(float((gradient * v).sum()), rel=2e-2, abs=1e-5)


def _cut_at(source: Path, folder: Path, tensor: str) -> ort.InferenceSession:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(source)))
    path = folder / "head.onnx"
    extracted = onnx.utils.Extractor(model).extract_model([tensor], [model.graph.output[0].name])
    onnx.save(extracted, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case,fragment", [
    ("not_4d", "expected a 4-D image batch"),
    ("segmentation", "expected class scores"),
    ("no_downsampling", "never lowers the spatial resolution"),
    ("unsupported_op", "op Hardmax (node 'the_hardmax')"),
])
def test_refusals(tmp_path: Path, case: str, fragment: str) -> None:
    model = refusal_models(tmp_path)[case]
    with pytest.raises(ExportError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        prepare_onnx(model, tmp_path / "out.sise.onnx")
    done = subprocess.run([sys.executable, "-m", "onnx_sise", "export", str(model), "-o", str(tmp_path / "x.onnx")],
                          capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], done.stderr
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "out.sise.onnx").exists()


def test_plain_nhwc_softmax_model_is_explained_and_cached(tmp_path: Path) -> None:
    import cv2

    model = build(tmp_path / "foreign.onnx", layout="NHWC", softmax=True)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), (np.random.default_rng(3).random((45, 61, 3)) * 255).astype(np.uint8))
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "onnx_sise", "explain", str(model), str(photo), "--out",
                               str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                              capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600)
        runs.append(done)
        assert done.returncode == 0, done.stderr
    assert "prepared now and cached" in runs[0].stdout
    assert "reused from the cache" in runs[1].stdout and "prepared now" not in runs[1].stdout
    saliency = np.load(tmp_path / "out" / "photo.sise.npy")
    assert saliency.shape == (45, 61) and np.isfinite(saliency).all()
    assert saliency.min() >= 0 and saliency.max() <= 1 and saliency.max() > 0
    assert len(list((tmp_path / "cache").glob("*.sise.onnx"))) == 1


def test_code_in_names_and_metadata_has_no_effect(tmp_path: Path, photos: Path) -> None:
    """Node names, tensor and initializer names, doc strings and metadata holding Python
    code are strings to the preparation, never code."""
    from onnx_sise import Explainer
    from onnx_sise.model.preparation.subgraphs import rename_everywhere

    marker = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    model = onnx.load(str(build(tmp_path / "plain.onnx", softmax=True)))
    graph = model.graph
    names = {n for node in graph.node for n in (*node.input, *node.output) if n} | {t.name for t in graph.initializer}
    rename_everywhere(graph, {n: f"{n};{payload}#" for n in names})
    for node in graph.node:
        node.name = f"{node.name}\n{payload}"
        node.doc_string = payload
    graph.doc_string = model.doc_string = payload
    model.metadata_props.add(key="exec", value=payload)
    model.metadata_props.add(key="onnx_sise_code", value=f"eval({payload!r})")
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "code.onnx"))
    info = prepare_onnx(tmp_path / "code.onnx", tmp_path / "code.sise.onnx")
    assert any(payload in t.source for t in info.taps)
    result = Explainer(tmp_path / "code.sise.onnx").explain(photos / "coffee.png", method="sise")
    assert np.isfinite(result.saliency).all() and not marker.exists()


@pytest.mark.parametrize("opset", range(9, onnx.defs.onnx_opset_version() + 1))
def test_every_opset_from_9_to_the_newest_onnx_knows(tmp_path: Path, opset: int) -> None:
    source = build(tmp_path / f"opset{opset}.onnx", opset=opset, softmax=opset % 2 == 0,
                   layout="NHWC" if opset % 3 == 0 else "NCHW", head="dynamic_reshape" if opset >= 11 else "gap")
    info = prepare_onnx(source, tmp_path / "prepared.sise.onnx", check="float64")
    assert info.verification["float64_directional"] < 1e-6
    assert [(t.channels, t.height) for t in info.taps] == [(8, 32), (8, 16), (16, 8)]


def _renamed(source: Path, target: Path, mapping: dict[str, str]) -> Path:
    from onnx_sise.model.preparation.subgraphs import rename_everywhere

    model = onnx.load(str(source))
    rename_everywhere(model.graph, mapping)
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("name", ["enabled", "noise", "masks", "branch/logits", "scoring/r2", "t/c2", "gradient/t/c2"])
def test_tensor_names_equal_to_the_explainable_files_own_names_are_prepared(tmp_path: Path, name: str) -> None:
    source = _renamed(build(tmp_path / "plain.onnx"), tmp_path / "renamed.onnx", {"c1": name})
    info = prepare_onnx(source, tmp_path / "prepared.sise.onnx")
    assert info.verification["float64_directional"] < 1e-6


def test_hostile_shapes_names_and_taps_are_refused_in_one_line(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    source = build(tmp_path / "plain.onnx")
    with pytest.raises(ExportError, match="more than 16777216 pixels"):
        prepare_onnx(source, tmp_path / "huge.sise.onnx", InputOverrides(size=(100000, 100000)))
    with pytest.raises(ExportError, match="--taps names weights or inputs"):
        prepare_onnx(source, tmp_path / "w.sise.onnx", taps=("w1", "r1"))
    reserved = _renamed(source, tmp_path / "reserved.onnx", {"c1": "onnx_sise::objective"})
    with pytest.raises(ExportError, match="reserved for onnx_sise"):
        prepare_onnx(reserved, tmp_path / "r.sise.onnx")
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if tensor.name == "w1":
            tensor.CopyFrom(numpy_helper.from_array(np.full((8, 3, 3, 3), np.nan, np.float32), "w1"))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(ExportError, match="NaN or infinite scores"):
        prepare_onnx(tmp_path / "nan.onnx", tmp_path / "nan.sise.onnx")
    # an If whose branches read a feature map from the outer scope, on the data path
    model = onnx.load(str(source))
    branch = helper.make_graph([helper.make_node("Relu", ["p1"], ["p1_then"])], "then", [],
                               [helper.make_tensor_value_info("p1_then", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Neg", ["p1"], ["p1_else"])], "else", [],
                              [helper.make_tensor_value_info("p1_else", TensorProto.FLOAT, None)])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    nodes = list(model.graph.node)
    index = next(i for i, n in enumerate(nodes) if n.name == "conv2")
    nodes[index].input[0] = "p1_if"
    nodes.insert(index, helper.make_node("If", ["cond"], ["p1_if"], then_branch=branch, else_branch=other, name="gate"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(tmp_path / "if.onnx"))
    with pytest.raises(ExportError, match=r"op If \(node 'gate'\) holds a sub-graph on the data path"):
        prepare_onnx(tmp_path / "if.onnx", tmp_path / "if.sise.onnx")
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".onnx" and ".sise" in p.name]
