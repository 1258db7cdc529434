"""Bounded work over real HTTP: 16 clients at once are each answered (200 with the
sequential map, or 503 with Retry-After), a client that disconnects mid-explanation has
its explanation cancelled and its slot given back (the metrics show it), and a full
server answers 503 at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from served import Server, b64, start_server

CLIENTS = 16
TARGETS = [967 + 2 * i for i in range(CLIENTS)]  # a different class per client: maps that differ
LIVENESS_SECONDS = 120  # a bound on waiting for the server's state to change, not a measured time


@pytest.fixture(scope="module")
def small_coffee(coffee: Path) -> bytes:
    rgb = cv2.imread(str(coffee))
    ok, png = cv2.imencode(".png", cv2.resize(rgb, (150, 100), interpolation=cv2.INTER_AREA))
    return png.tobytes()


def gradcam(url: str, photo: bytes, target: int) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/lite0:explain", timeout=300, json={
        "instances": [b64(photo)], "parameters": {"method": "gradcam", "target": target, "map": "array"}})


@pytest.mark.slow
def test_sixteen_clients_at_once_are_all_answered_with_the_sequential_maps(server: Server,
                                                                         small_coffee: bytes) -> None:
    sequential = {}
    for target in TARGETS:
        answer = gradcam(server.url, small_coffee, target)
        assert answer.status_code == 200, answer.text
        sequential[target] = np.array(answer.json()["explanations"][0]["targets"][0]["map"], np.float32)
    start = threading.Barrier(CLIENTS)

    def client(target: int) -> tuple[int, httpx.Response]:
        start.wait()
        return target, gradcam(server.url, small_coffee, target)

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(client, TARGETS))
    assert len(answers) == CLIENTS  # none lost
    statuses = [a.status_code for _, a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    for target, answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "3" and "busy" in answer.json()["error"]
        else:
            served = np.array(answer.json()["explanations"][0]["targets"][0]["map"], np.float32)
            assert np.array_equal(served, sequential[target]), target
    assert server.metric("onnx_sise_queue_depth", model_name="lite0") == 0
    assert server.metric("onnx_sise_in_flight", model_name="lite0") == 0


@pytest.fixture(scope="module")
def one_slot(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One slot and no queue: a second request while one runs is refused at once."""
    running = start_server(lite0_path, tmp_path_factory.mktemp("serve") / "one_slot.log", "--slots", "1",
                           "--queue", "0", "--threads", "2", "--retry-after", "7")
    yield running
    running.stop()


def wait_for(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"the server never got to: {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_client_that_disconnects_frees_its_slot(one_slot: Server, coffee: Path, small_coffee: bytes) -> None:
    def impatient() -> None:  # SISE takes seconds here: the client leaves after 2
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{one_slot.url}/v1/models/lite0:explain", json={"instances": [b64(coffee)]},
                       timeout=httpx.Timeout(60, read=2))

    leaving = threading.Thread(target=impatient)
    leaving.start()
    wait_for(lambda: one_slot.metric("onnx_sise_in_flight", model_name="lite0") == 1, "one explanation running")
    refused = gradcam(one_slot.url, small_coffee, 967)  # the only slot is taken, no queue
    assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
    leaving.join()
    wait_for(lambda: one_slot.metric("onnx_sise_explain_requests_total", model_name="lite0",
                                     outcome="cancelled") == 1, "the explanation cancelled")
    wait_for(lambda: one_slot.metric("onnx_sise_in_flight", model_name="lite0") == 0, "the slot given back")
    # the SISE explanation never finished: it ran no pass the counter saw, and no latency
    assert one_slot.metric("onnx_sise_masked_passes_total", model_name="lite0", method="sise") == 0
    assert one_slot.metric("onnx_sise_explanation_seconds_count", model_name="lite0", method="sise") == 0
    answer = gradcam(one_slot.url, small_coffee, 967)  # the next request gets the slot
    assert answer.status_code == 200, answer.text
    assert one_slot.metric("onnx_sise_explain_requests_total", model_name="lite0", outcome="ok") == 1
    assert one_slot.metric("onnx_sise_explain_requests_total", model_name="lite0", outcome="overloaded") == 1
    assert '"outcome": "cancelled"' in one_slot.log.read_text()


def test_max_seconds_stops_an_explanation_with_504(server: Server, coffee: Path) -> None:
    answer = httpx.post(f"{server.url}/v1/models/lite0:explain", timeout=300, json={
        "instances": [b64(coffee)], "parameters": {"method": "sise", "max_seconds": 0.2}})
    assert answer.status_code == 504 and "\n" not in answer.text
    assert "max_seconds=0.2" in answer.json()["error"]
    wait_for(lambda: server.metric("onnx_sise_in_flight", model_name="lite0") == 0, "the slot given back")
    assert server.metric("onnx_sise_explain_requests_total", model_name="lite0", outcome="timeout") >= 1
