"""Reading files that strangers name: regular files only, never blocking, bounded."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from onnx_sise.errors import ImageError
from onnx_sise.files.reading import read_regular


def test_bad_input_a_small_file_costs_its_size_not_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 1000)
    tracemalloc.start()
    try:
        data = read_regular(path, "image", ImageError, 1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == b"x" * 1000
    assert peak < 1 << 20, f"reading 1000 bytes allocated {peak} bytes"


def test_bad_input_over_the_bound_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ImageError, match="101 bytes: more than the 100 bytes accepted for an image"):
        read_regular(path, "image", ImageError, 100)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="is not a regular file"):
        read_regular(fifo, "image", ImageError, 100)
