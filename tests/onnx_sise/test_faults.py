"""Faults while `explain` writes: SIGINT, SIGTERM and SIGHUP sent to a real
`python -m onnx_sise explain` at several points of a write, and a re-run on a full file
system. After each: no temporary file is left, the overlay/map pair is the old one or the
new one (never a mixture), and stderr holds one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_sise.images.overlay import overlay

SIZE = (4000, 6000)  # a photo whose map (96 MB) takes a while to write
MAP_BYTES = 128 + 4 * SIZE[0] * SIZE[1]  # the .npy header and float32 pixels
OLD_TARGET, NEW_TARGET = 281, 967
PAIR = ("cup.gradcam.npy", "cup.gradcam.png")
HANG = 600  # seconds: only a hang runs this long


def explain(model: Path, photo: Path, out: Path, target: int) -> list[str]:
    return [sys.executable, "-m", "onnx_sise", "explain", str(model), str(photo), "--method", "gradcam",
            "--target", str(target), "--out", str(out)]


def temporaries(out: Path) -> list[str]:
    return [name for name in os.listdir(out) if name.startswith(".") and name.endswith(".tmp")]


@pytest.fixture(scope="module")
def big_photo(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "cup.png"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(photos / "coffee.png")), SIZE[::-1]))
    return path


@pytest.fixture(scope="module")
def old_pair(lite0_path: Path, big_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pair of an earlier run (another class), which a stopped re-run must keep whole."""
    out = tmp_path_factory.mktemp("old")
    done = subprocess.run(explain(lite0_path, big_photo, out, OLD_TARGET), capture_output=True, text=True,
                          timeout=HANG, cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr
    return out


# When to send the signal, judged from the output folder: the map's temporary file has
# appeared, it is complete, or the map has been renamed into place.
def first_temporary(out: Path, old_map: int) -> bool:
    return bool(temporaries(out))


def map_temporary_complete(out: Path, old_map: int) -> bool:
    sizes = []
    for name in temporaries(out):
        try:
            sizes.append(os.stat(out / name).st_size)
        except FileNotFoundError:
            pass
    return any(size >= MAP_BYTES for size in sizes)


def map_renamed(out: Path, old_map: int) -> bool:
    try:
        return os.stat(out / PAIR[0]).st_ino != old_map
    except FileNotFoundError:
        return False


def signal_when(process: subprocess.Popen, ready: Callable[[Path, int], bool], out: Path,
                signals: list[int]) -> tuple[bool, bool]:
    """Send `signals` once `ready` holds: (sent, a temporary file was there just after,
    so the run was still writing when the signal became pending)."""
    old_map = os.stat(out / PAIR[0]).st_ino
    while process.poll() is None:
        if ready(out, old_map):
            for signum in signals:
                process.send_signal(signum)
            return True, bool(temporaries(out))
        time.sleep(0.0005)
    return False, False


def assert_pair_whole(out: Path, old: Path, photo: Path) -> str:
    """'old' or 'new': the pair in `out` is one run's, whole."""
    npy, png = (out / name for name in PAIR)
    if npy.read_bytes() == (old / PAIR[0]).read_bytes():
        assert png.read_bytes() == (old / PAIR[1]).read_bytes(), "new overlay beside the old map"
        return "old"
    rgb = cv2.imread(str(photo))[..., ::-1]
    matches = np.array_equal(cv2.imread(str(png))[..., ::-1], overlay(rgb, np.load(npy)))
    assert matches, "the overlay is not the map's: a mixed pair"
    return "new"


@pytest.mark.parametrize(("ready", "signals"), [
    (first_temporary, [signal.SIGINT]), (first_temporary, [signal.SIGTERM]), (first_temporary, [signal.SIGHUP]),
    (first_temporary, [signal.SIGINT, signal.SIGINT]), (map_temporary_complete, [signal.SIGINT]),
    (map_temporary_complete, [signal.SIGTERM]), (map_renamed, [signal.SIGINT]), (map_renamed, [signal.SIGTERM]),
], ids=["sigint_writing", "sigterm_writing", "sighup_writing", "sigint_twice_writing", "sigint_map_complete",
        "sigterm_map_complete", "sigint_map_renamed", "sigterm_map_renamed"])
def test_fault_signal_during_the_write(ready: Callable[[Path, int], bool], signals: list[int], lite0_path: Path,
                                       big_photo: Path, old_pair: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(old_pair, out)
    process = subprocess.Popen(explain(lite0_path, big_photo, out, NEW_TARGET), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    try:
        sent, while_writing = signal_when(process, ready, out, signals)
        _, stderr = process.communicate(timeout=HANG)
    finally:
        process.kill()
    assert sent, "the run ended before the signal"
    assert temporaries(out) == [] and sorted(os.listdir(out)) == sorted(PAIR)
    which = assert_pair_whole(out, old_pair, big_photo)
    lines = stderr.strip().splitlines()
    stopped = 128 + signals[0]
    if while_writing:  # the run had the signal before its renames ended: it stops, old or new pair
        assert process.returncode == stopped, stderr
    if ready is first_temporary:
        assert while_writing, "the map's temporary file came and went between two looks"
    assert process.returncode in (0, stopped), stderr
    if process.returncode == stopped:
        name = signal.Signals(signals[0]).name
        assert len(lines) == 1 and lines[0].startswith(f"onnx_sise: error: stopped by {name}"), stderr
    else:  # the signal came as the run was ending: it finished and said nothing
        assert lines == [] and which == "new"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB file system (tmpfs), mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Write a file that leaves `leave` bytes free on `disk`."""
    stats = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))


def test_fault_rerun_on_a_full_disk_keeps_the_old_pair(lite0_path: Path, photos: Path, small_disk: Path,
                                                       tmp_path: Path) -> None:
    """The photo changed (bigger) and the disk has room for the new map but not the
    overlay too: the old pair stays, whole, and the error is one line."""
    photo = tmp_path / "in" / "cup.png"
    photo.parent.mkdir()
    cup = cv2.imread(str(photos / "coffee.png"))
    cv2.imwrite(str(photo), cv2.resize(cup, (150, 100)))
    out = small_disk / "out"
    first = subprocess.run(explain(lite0_path, photo, out, NEW_TARGET), capture_output=True, text=True,
                           timeout=HANG, cwd=tempfile.gettempdir())
    assert first.returncode == 0, first.stderr
    old = {name: (out / name).read_bytes() for name in PAIR}
    cv2.imwrite(str(photo), cup)
    reference = subprocess.run(explain(lite0_path, photo, tmp_path / "ref", NEW_TARGET), capture_output=True,
                               text=True, timeout=HANG, cwd=tempfile.gettempdir())
    assert reference.returncode == 0, reference.stderr
    new_map, new_overlay = ((tmp_path / "ref" / name).stat().st_size for name in PAIR)
    fill(small_disk, leave=new_map + new_overlay // 2)
    done = subprocess.run(explain(lite0_path, photo, out, NEW_TARGET), capture_output=True, text=True,
                          timeout=HANG, cwd=tempfile.gettempdir())
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "No space left on device" in lines[0], done.stderr
    assert temporaries(out) == [] and {name: (out / name).read_bytes() for name in os.listdir(out)} == old
