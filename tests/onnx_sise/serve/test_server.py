"""The server's answers to a client's mistakes over real HTTP: each bad payload gets 400
(413 for a body over the limit) and one JSON line {"error": ...}, never a 500 or a
traceback; and the graceful shutdown: SIGTERM with an explanation in flight cancels it
after the grace period and the process exits."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from served import MAX_BODY_BYTES, MAX_PIXELS, Server, b64, start_server

GREY = np.zeros((8, 8, 3), np.uint8)


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", rgb)[1].tobytes()


def body(instances: list, **parameters: object) -> bytes:
    return json.dumps({"instances": instances, "parameters": parameters}).encode()


def bad_payloads(coffee: Path) -> dict[str, tuple[bytes, int, str]]:
    """name -> (body, status, a phrase of the error line)."""
    photo = b64(coffee)
    huge = png(np.zeros((2100, 2100, 3), np.uint8))  # 4.4 M pixels, a small file: over MAX_PIXELS
    assert 2100 * 2100 > MAX_PIXELS and len(huge) < MAX_BODY_BYTES
    return {
        "not JSON": (b"{instances: nope", 400, "Unrecognized request format"),
        "not JSON at all": (b"nope", 400, "Unrecognized request format"),
        "no instances": (b'{"parameters": {"method": "gradcam"}}', 400, "instances"),
        "instances not a list": (b'{"instances": {"b64": "AAAA"}}', 400, "instances"),
        "bad base64": (body([{"b64": "not base64 at all!"}]), 400, "base64"),
        "not an image": (body([{"image_bytes": {"b64": base64.b64encode(b"hello, world").decode()}}]), 400,
                         "cannot decode"),
        "huge image": (body([b64(huge)]), 400, "more than the limit"),
        "unknown method": (body([photo], method="magic"), 400, "unknown method"),
        "class out of range": (body([photo], method="gradcam", target=1000), 400, "out of range"),
        "bad option type": (body([photo], method="sise", mu="many"), 400, "mu must be"),
        "unknown option": (body([photo], method="gradcam", colour="blue"), 400, "unknown method options"),
        "RGB lists out of range": (body([[[[0, 0, 300]]]], method="gradcam"), 400, "[0, 255]"),
        "oversize body": (b'{"instances": ["' + b"A" * MAX_BODY_BYTES + b'"]}', 413, "over the limit"),
    }


def test_bad_payloads_get_400_or_413_and_one_line(server: Server, coffee: Path) -> None:
    cases = bad_payloads(coffee)
    assert len(cases) >= 10
    for name, (data, status, phrase) in cases.items():
        answer = httpx.post(f"{server.url}/v1/models/lite0:explain", content=data,
                            headers={"content-type": "application/json"}, timeout=60)
        assert answer.status_code == status, (name, answer.text)
        assert "\n" not in answer.text and "Traceback" not in answer.text, name
        error = answer.json()
        assert list(error) == ["error"] and phrase in error["error"], (name, error)
    assert server.process.poll() is None


def test_a_streamed_body_over_the_limit_gets_413(server: Server) -> None:
    """No Content-Length (chunked): the limit is counted as the body arrives."""
    def chunks():  # noqa: ANN202
        yield b'{"instances": ["'
        for _ in range(MAX_BODY_BYTES // (1 << 16) + 1):
            yield b"A" * (1 << 16)
        yield b'"]}'

    answer = httpx.post(f"{server.url}/v1/models/lite0:explain", content=chunks(),
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 413 and "over the limit" in answer.json()["error"]


def test_bad_predictions_and_torchserve_bodies_get_400(server: Server) -> None:
    for url, data in [("/v1/models/lite0:predict", body([GREY.tolist()], top_k=0)),
                      ("/explanations/lite0?method=nope", png(GREY)),
                      ("/predictions/lite0", b"GIF89a not really"),
                      ("/v2/models/lite0/infer", b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", '
                                                 b'"data": [1.0]}]}')]:
        answer = httpx.post(server.url + url, content=data, timeout=60,
                            headers={"content-type": "application/json" if data[:1] == b"{" else "image/png"})
        assert answer.status_code == 400 and list(answer.json()) == ["error"], (url, answer.text)
    assert httpx.post(f"{server.url}/explanations/nomodel", content=png(GREY), timeout=60).status_code == 404


@pytest.mark.slow
def test_sigterm_cancels_the_explanation_in_flight_after_the_grace_period(lite0_path: Path, coffee: Path,
                                                                          tmp_path: Path) -> None:
    running = start_server(lite0_path, tmp_path / "server.log", "--slots", "1", "--grace-seconds", "1",
                           "--threads", "2")
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(httpx.post(f"{running.url}/v1/models/lite0:explain", json={"instances": [b64(coffee)]},
                                      timeout=300).status_code)
        except httpx.TransportError as exc:  # the server closed the connection
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 120
    while running.metric("onnx_sise_in_flight", model_name="lite0") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    code = running.stop(timeout=120)  # SIGTERM; kills only if it never exits
    thread.join()
    log = running.log.read_text()
    assert code == 0, log[-2000:]
    assert '"outcome": "cancelled"' in log, log[-2000:]
    assert outcome and outcome[0] != 200, outcome  # SISE takes far longer than the grace second here


def test_without_kserve_the_runtime_imports_and_serve_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str],
                                                                           tmp_path: Path) -> None:
    import sys

    from onnx_sise.cli import main

    for name in [m for m in sys.modules if m == "kserve" or m.startswith(("kserve.", "onnx_sise.serve"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kserve", None)  # import kserve raises ImportError
    assert main(["serve", str(tmp_path / "model.onnx")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "pip install 'onnx_sise[serve]'" in error


def test_a_port_in_use_is_one_line_before_the_model_loads(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import socket

    from onnx_sise.cli import main

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tmp_path / "absent.onnx"), "--http-port", str(port), "--no-grpc"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"--http-port {port} cannot be listened on" in error
