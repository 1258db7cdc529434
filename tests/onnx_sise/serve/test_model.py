"""The served model over real HTTP: predict gives the top-k of the session's own scores,
explain gives Explainer.explain's map bit for bit (float array) and as a 16-bit PNG, with
the summary `explain --json` prints; V2 inference and TorchServe's routes."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from served import Server, b64
from skimage import io

from onnx_sise import Explainer
from onnx_sise.images.model_input import model_input

EXPLAIN_TIMEOUT = 300


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, threads=2)  # the server's --threads: the same onnxruntime work split


def explain(server: Server, body: dict) -> dict:
    answer = httpx.post(f"{server.url}/v1/models/lite0:explain", json=body, timeout=EXPLAIN_TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_predict_gives_the_top_k_of_the_sessions_scores(server: Server, explainer: Explainer, lite0_path: Path,
                                                        coffee: Path) -> None:
    """Reference: a plain onnxruntime session on the preprocessed photo (skimage decodes it)."""
    info = explainer.info
    x = model_input(io.imread(coffee)[..., :3], info.input).x
    session = ort.InferenceSession(str(lite0_path), providers=["CPUExecutionProvider"])
    (scores,) = session.run([info.graph.batch_scores], {info.graph.masked_batch: x[None]})
    best = np.argsort(-scores[0], kind="stable")[:3]
    answer = httpx.post(f"{server.url}/v1/models/lite0:predict",
                        json={"instances": [{"image_bytes": {"b64": b64(coffee)}}], "parameters": {"top_k": 3}},
                        timeout=60).json()
    (prediction,) = answer["predictions"]
    assert prediction["classes"] == best.tolist() and prediction["classes"][0] == 967
    np.testing.assert_allclose(prediction["scores"], scores[0][best], rtol=1e-5)
    assert prediction["labels"][0] == info.label(967)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "ada-sise", "sise"])
def test_explain_gives_the_explainers_map_bit_for_bit(server: Server, explainer: Explainer, coffee: Path,
                                                      method: str) -> None:
    answer = explain(server, {"instances": [{"b64": b64(coffee)}], "parameters": {"method": method, "map": "both"}})
    ((entry,),) = [e["targets"] for e in answer["explanations"]]
    expected = explainer.explain(coffee, method=method)
    served = np.array(entry["map"], dtype=np.float32)
    assert served.shape == expected.saliency.shape == (answer["explanations"][0]["height"],
                                                        answer["explanations"][0]["width"])
    assert np.array_equal(served, expected.saliency)  # bit for bit: JSON floats round-trip float32
    png = cv2.imdecode(np.frombuffer(base64.b64decode(entry["map_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == served.shape
    assert np.array_equal(png, np.rint(expected.saliency.astype(np.float64) * 65535).astype(np.uint16))
    summary = expected.summary()
    for key in ("target", "label", "method", "masks_used", "forward_passes", "passes_run"):
        assert entry[key] == summary[key], key


def test_targets_top_k_and_options_are_the_apis(server: Server, explainer: Explainer, coffee: Path) -> None:
    """Two targets in one request; a method option (the CAM layer) and the array map only."""
    answer = explain(server, {"instances": [b64(coffee)],
                              "parameters": {"method": "gradcam", "targets": [967, 968], "layer": "block3",
                                             "map": "array"}})
    entries = answer["explanations"][0]["targets"]
    expected = explainer.explain_targets(coffee, [967, 968], method="gradcam", layer="block3")
    assert [e["target"] for e in entries] == [967, 968]
    assert "map_png" not in entries[0]
    for entry, reference in zip(entries, expected):
        assert np.array_equal(np.array(entry["map"], np.float32), reference.saliency)
    top = explain(server, {"instances": [b64(coffee)], "parameters": {"method": "gradcam", "top_k": 2}})
    assert [e["target"] for e in top["explanations"][0]["targets"]] == [967, 968]


def test_every_instance_form_gives_the_same_map(server: Server, coffee: Path) -> None:
    rgb = io.imread(coffee)[..., :3]
    small = cv2.resize(rgb, (60, 40), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    encoded = base64.b64encode(png.tobytes()).decode()
    forms = [{"image_bytes": {"b64": encoded}}, {"b64": encoded}, encoded, small.tolist()]
    answer = explain(server, {"instances": forms, "parameters": {"method": "gradcam", "map": "array"}})
    maps = [np.array(e["targets"][0]["map"], np.float32) for e in answer["explanations"]]
    assert all(np.array_equal(maps[0], m) for m in maps[1:]) and maps[0].shape == (40, 60)
    raw = httpx.post(f"{server.url}/v1/models/lite0:predict", content=coffee.read_bytes(),
                     headers={"content-type": "image/png"}, timeout=60).json()  # a raw photo body
    assert raw["predictions"][0]["classes"][0] == 967


def test_torchserve_routes_and_v2_inference(server: Server, explainer: Explainer, coffee: Path) -> None:
    answer = httpx.post(f"{server.url}/explanations/lite0", params={"method": "gradcam", "target": "968",
                                                                    "map": "array"},
                        content=coffee.read_bytes(), headers={"content-type": "image/png"}, timeout=60)
    assert answer.status_code == 200, answer.text
    (entry,) = answer.json()["explanations"][0]["targets"]
    assert np.array_equal(np.array(entry["map"], np.float32), explainer.explain(coffee, 968, "gradcam").saliency)
    top = httpx.post(f"{server.url}/predictions/lite0", params={"top_k": "2"}, content=coffee.read_bytes(),
                     headers={"content-type": "image/png"}, timeout=60).json()
    assert top["predictions"][0]["classes"] == [967, 968]
    v2 = httpx.post(f"{server.url}/v2/models/lite0/infer", timeout=60, json={
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(coffee)]}],
        "parameters": {"top_k": 2}}).json()
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["classes"]["data"] == [967, 968] and outputs["classes"]["shape"] == [1, 2]
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v1/models/lite0", timeout=10).json() == {"name": "lite0", "ready": True}
