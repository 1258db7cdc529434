"""Model files as a hostile or careless caller leaves them: rewritten in place while the
CLI loads them (the external-data check memory-mapped the file: SIGBUS), named pipes.
Real files, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from onnx_sise.errors import ModelError
from onnx_sise.model.files import read_model_file

CLI_RUNS = 6
# Rewrites the model in place forever: truncated to a third, then written whole again.
WRITER = textwrap.dedent("""
    import sys, time
    path = sys.argv[1]
    data = open(path, "rb").read()
    print("ready", flush=True)
    while True:
        with open(path, "r+b") as handle:
            handle.truncate(len(data) // 3)
            time.sleep(0.02)
            handle.seek(0)
            handle.write(data)
        time.sleep(0.02)
""")


def test_fault_model_rewritten_while_the_cli_loads_it(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    model = tmp_path / "moving.sise.onnx"
    model.write_bytes(lite0_path.read_bytes())
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(model)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for run in range(CLI_RUNS):
            out = tmp_path / f"out{run}"
            done = subprocess.run([sys.executable, "-m", "onnx_sise", "explain", str(model), str(photos / "coffee.png"),
                                   "--out", str(out), "--method", "gradcam", "--cache-dir", str(tmp_path / "cache")],
                                  capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
            assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr[-500:]}"
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 0 or (done.returncode == 2 and len(lines) == 1
                                            and lines[0].startswith("onnx_sise: error:")), done.stderr[-2000:]
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()  # type: ignore[union-attr]


def test_bad_input_model_files_that_are_not_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is not a regular file"):
        read_model_file(fifo, str(fifo))
    with pytest.raises(ModelError, match="is not a regular file"):
        read_model_file(Path("/dev/zero"), "/dev/zero")
