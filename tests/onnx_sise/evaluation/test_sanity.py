"""The cascading randomisation test (Adebayo et al. 2018): the layers and their cascade
order read off the graph, the re-drawn weights reaching the scoring graph and the
gradient graph alike, the metrics against scipy and skimage, and `sanity` end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from onnx_sise import Explainer
from onnx_sise.cli import main
from onnx_sise.errors import ModelError, OptionError
from onnx_sise.evaluation.sanity import (
    cascade,
    check_copies,
    model_proto,
    parameterised_layers,
    parse_depths,
    randomised_model,
    spearman,
    ssim,
)

SAVED_MAPS = Path(__file__).resolve().parents[2] / "data" / "maps_before_layout.npz"


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 as skimage computes it, on maps min-max normalised to [0, 1]."""
    def unit(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.float64)
        return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)

    return float(structural_similarity(unit(a), unit(b), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, K1=0.01, K2=0.03))


def map_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Random maps (with ties, of several shapes) and the saved real maps of the methods."""
    rng = np.random.default_rng(3)
    pairs = [(rng.random((40, 50)), rng.random((40, 50))),
             (rng.integers(0, 5, (33, 21)).astype(float), rng.integers(0, 3, (33, 21)).astype(float))]
    base = rng.random((64, 64))
    pairs.append((base, base + 0.3 * rng.random((64, 64))))
    saved = np.load(SAVED_MAPS)
    real = [saved[k] for k in saved.files if k.startswith("efficientnet-lite0/")]
    pairs += [(a, b) for a, b in zip(real, real[1:])]
    return pairs


@pytest.mark.parametrize("pair", range(len(map_pairs())))
def test_metrics_equal_scipy_and_skimage(pair: int) -> None:
    a, b = map_pairs()[pair]
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-9)
    assert spearman(np.abs(a - 0.5), np.abs(b - 0.5)) == pytest.approx(
        spearmanr(np.abs(a - 0.5).ravel(), np.abs(b - 0.5).ravel()).statistic, abs=1e-9)
    assert ssim(a, b) == pytest.approx(skimage_ssim(a, b), abs=1e-7)
    assert spearman(a, a) == pytest.approx(1.0) and ssim(a, a) == pytest.approx(1.0)


def test_spearman_of_a_constant_map_is_nan_as_scipy() -> None:
    a = np.ones((20, 20))
    assert math.isnan(spearman(a, np.arange(400.0).reshape(20, 20)))
    with pytest.raises(ValueError):
        spearman(a, np.ones((20, 21)))


def test_depths_are_parsed_and_refused_in_one_line() -> None:
    assert parse_depths("4,1,all,4", 50) == [1, 4, 50]
    for bad in ("0", "51", "x", "1,,2"):
        with pytest.raises(OptionError):
            parse_depths(bad, 50)


def ancestors(graph: onnx.GraphProto, node_name: str) -> set[str]:
    """The nodes of `graph` whose outputs `node_name` depends on."""
    producer = {out: node for node in graph.node for out in node.output}
    node = next(n for n in graph.node if n.name == node_name)
    found, todo = set(), list(node.input)
    while todo:
        source = producer.get(todo.pop())
        if source is not None and source.name not in found:
            found.add(source.name)
            todo.extend(source.input)
    return found


def test_layers_of_lite0_and_the_cascade_order_output_side_first(lite0_path: Path) -> None:
    model = onnx.load(str(lite0_path))
    layers = parameterised_layers(model)
    graph = model.graph
    assert len(layers) == sum(n.op_type in ("Conv", "Gemm") for n in graph.node)  # 49 Conv + the classifier
    order = cascade(layers, len(layers))
    top = next(n for n in graph.node if n.name == order[0].node)
    assert top.op_type == "Gemm" and set(order[0].initializers) == set(top.input[1:])
    softmax = next(n for n in graph.node if n.output[0] == "batch_scores")
    assert top.output[0] in softmax.input  # nothing parameterised between it and Psi
    for upper, lower in zip(order, order[1:]):  # each next layer feeds the one before it
        assert lower.node in ancestors(graph, upper.node)
        assert upper.node not in ancestors(graph, lower.node)


def test_randomising_the_top_layer_changes_the_logits_and_its_gradient(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path, threads=2)
    proto = model_proto(explainer)
    layers = parameterised_layers(proto)
    damaged = randomised_model(proto, layers, 1, seed=5)
    x, _ = explainer.preprocess(photos / "coffee.png")
    original = ort.InferenceSession(str(lite0_path), providers=["CPUExecutionProvider"])
    before = original.run(["batch_scores"], {"masked_batch": x[None]})[0]
    after = ort.InferenceSession(damaged.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["batch_scores"], {"masked_batch": x[None]})[0]
    assert np.abs(after - before).max() > 0.1
    # The gradient graph reads the new weights too: d y_c / d A of the head's activation
    # (A -> mean over 7 x 7 -> fc) is W_new[c] / 49 at every location.
    model = Explainer(damaged.SerializeToString(), threads=2, prepare=False).model
    assert check_copies(model, x) <= 1e-4
    weight = next(numpy_helper.to_array(t) for t in damaged.graph.initializer if t.name == layers[-1].initializers[0])
    assert not np.array_equal(weight, next(numpy_helper.to_array(t) for t in proto.graph.initializer
                                            if t.name == layers[-1].initializers[0]))
    u = np.zeros(model.info.num_classes, np.float32)
    u[967] = 1
    head = model.block_features(x, np.zeros_like(u), u)[-1]
    assert np.allclose(head.gradients, (weight[967] / 49)[:, None, None], atol=1e-7)


def test_every_copy_is_redrawn_and_a_missed_copy_is_caught(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path, threads=2)
    proto = model_proto(explainer)
    layers = parameterised_layers(proto)
    damaged = randomised_model(proto, layers, len(layers))
    weights = {name for layer in layers for name in layer.initializers}
    old = {numpy_helper.to_array(t).tobytes() for t in proto.graph.initializer if t.name in weights}

    def sub_initializers(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
        return [t for n in graph.node for a in n.attribute if a.HasField("g")
                for t in [*a.g.initializer, *sub_initializers(a.g)]]

    copies = sub_initializers(damaged.graph)
    assert copies and not [t.name for t in copies if numpy_helper.to_array(t).tobytes() in old]
    branch = next(a.g for n in damaged.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch")
    transposed = {n.input[1] for n in branch.node if n.op_type == "ConvTranspose"}
    assert transposed <= {n.input[1] for n in branch.node if n.op_type == "Conv"}  # backward reads the forward's copy
    x, _ = explainer.preprocess(photos / "coffee.png")
    half = onnx.ModelProto()
    half.CopyFrom(proto)  # the scoring graph re-drawn, the gradient graph's copies not
    redrawn = {t.name: t for t in damaged.graph.initializer}
    for tensor in half.graph.initializer:
        tensor.CopyFrom(redrawn[tensor.name])
    with pytest.raises(ModelError, match="copy was missed"):
        check_copies(Explainer(half.SerializeToString(), threads=2, prepare=False).model, x)


def test_randomising_nothing_keeps_the_maps(lite0_path: Path, photos: Path) -> None:
    explainer = Explainer(lite0_path, threads=2)
    proto = model_proto(explainer)
    same = Explainer(randomised_model(proto, parameterised_layers(proto), 0).SerializeToString(), threads=2,
                     prepare=False)
    for method in ("gradcam", "gradcam++"):
        a = explainer.explain(photos / "coffee.png", target=967, method=method).saliency
        b = same.explain(photos / "coffee.png", target=967, method=method).saliency
        assert spearman(a, b) == pytest.approx(1.0, abs=1e-12) and ssim(a, b) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.slow
def test_sanity_command_end_to_end(lite0_path: Path, photos: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photos / "coffee.png", images)
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"images": [{"file": "coffee.png", "target": 967}]}))
    out = tmp_path / "out"
    common = [str(lite0_path), "--images", str(images), "--annotations", str(annotations), "--methods", "gradcam",
              "--threads", "2", "--out", str(out)]
    assert main(["sanity", *common, "--depths", "1,all"]) == 0
    printed = capsys.readouterr().out
    assert "| gradcam |" in printed and "top 50 (all)" in printed
    report = json.loads((out / "sanity.json").read_text())
    assert [d["depth"] for d in report["depths"]] == [1, 50] and len(report["layers"]) == 50
    rows = {d: report["methods"]["gradcam"][d] for d in ("1", "50")}
    for entry in rows.values():
        assert -1 <= entry["spearman"] < 1 and entry["ssim"] < 1
        assert entry["images"][0]["file"] == "coffee.png" and entry["spearman_abs"] == entry["spearman"]
    assert rows["50"]["images"][0]["score"] < 0.5  # the destroyed model no longer sees an espresso
    assert (out / "sanity.csv").read_text().splitlines()[0] == "method,depth,deepest_layer,spearman,spearman_abs,ssim"
    for bad in (["--depths", "0"], ["--depths", "1,x"], ["--weights-seed", "-1"], ["--batch-size", "0"]):
        assert main(["sanity", *common, *bad]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "Traceback" not in error
