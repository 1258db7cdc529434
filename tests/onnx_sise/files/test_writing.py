"""Writing result files: whole or not at all, no temporary file left, names bounded."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from onnx_sise.errors import OutputError
from onnx_sise.files.writing import NAME_MAX, replace_together, signals_deferred, write_atomically


def test_write_atomically_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a.bin", b"abc")
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"abc"
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create output directory"):
        write_atomically(blocker / "x" / "a.bin", b"abc")


def test_bad_input_name_at_the_limit_is_written_one_byte_more_refused(tmp_path: Path) -> None:
    longest = tmp_path / ("n" * (NAME_MAX - 4) + ".npy")
    write_atomically(longest, b"abc")
    assert [p.name for p in tmp_path.iterdir()] == [longest.name]
    with pytest.raises(OutputError, match=f"is {NAME_MAX + 1} bytes, more than the {NAME_MAX}"):
        write_atomically(tmp_path / ("n" * (NAME_MAX - 3) + ".npy"), b"abc")
    assert [p.name for p in tmp_path.iterdir()] == [longest.name]


def test_bad_input_directory_in_the_way_keeps_the_whole_group_unwritten(tmp_path: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"old map")
    (tmp_path / "a.png").mkdir()
    with pytest.raises(OutputError, match="a directory of that name is in the way"):
        replace_together({tmp_path / "a.npy": b"new map", tmp_path / "a.png": b"new overlay"})
    assert (tmp_path / "a.npy").read_bytes() == b"old map" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.npy", "a.png"]


def test_fault_signal_inside_the_deferred_block_is_raised_after_it() -> None:
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached_the_end = True
    assert reached_the_end and signal.getsignal(signal.SIGINT) is signal.default_int_handler
