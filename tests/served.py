"""The served model for tests/onnx_sise/serve: `python -m onnx_sise serve` started as a
subprocess on a free local port, talked to over real HTTP (httpx)."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 180  # loading kserve and the model on 2 busy cores
# The default configuration: two slots, a queue of six, a small body and pixel budget so
# that the bad-payload tests can reach both.
MAX_BODY_BYTES = 4 << 20
MAX_PIXELS = 1 << 22
DEFAULT_FLAGS = ("--slots", "2", "--queue", "6", "--max-body-bytes", str(MAX_BODY_BYTES), "--max-pixels",
                 str(MAX_PIXELS), "--threads", "2", "--retry-after", "3")


class Server:
    """A running `serve` process: its URL, its log file and its process."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        for line in text.splitlines():
            match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                return float(match.group(2))
        return 0.0

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, log: Path, *flags: str, name: str = "lite0") -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "onnx_sise", "serve", str(model), "--name", name,
                                    "--http-port", str(port), "--no-grpc", *flags],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/v2/models/{name}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the server was not ready after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def b64(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return base64.b64encode(data).decode("ascii")
