from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_inputs import gif_bomb, png_chunk, png_with, tiff_bomb

from onnx_sise.errors import ImageError
from onnx_sise.images.decode import decode_rgb, read_rgb


def test_read_rgb_gives_rgb_order(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "red.png"), rgb[..., ::-1])
    loaded = read_rgb(tmp_path / "red.png")
    assert loaded.shape == (4, 5, 3) and (loaded[..., 0] == 200).all() and not loaded[..., 1:].any()


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((6, 7), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((6, 7, 4), 90, np.uint8))
    assert read_rgb(tmp_path / "gray.png").shape == (6, 7, 3)
    assert read_rgb(tmp_path / "rgba.png").shape == (6, 7, 3)


@pytest.mark.parametrize("make,fragment", [
    (lambda p: None, "image not found"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg"), "cannot decode"),
])
def test_bad_images_raise_image_error(tmp_path: Path, make, fragment: str) -> None:  # noqa: ANN001
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageError, match=fragment):
        read_rgb(path)


# --- issue 13: decoders get the pixel budget first; libpng prints nothing ----------

PEAK_ALLOWANCE_KIB = 300 * 1024
PEAK_CHILD = """
import json, resource, sys
from onnx_sise.errors import ImageError
from onnx_sise.images.decode import read_rgb

def peak_kib():
    # VmHWM is this process's own peak; ru_maxrss can carry a parent's across exec
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
baseline = peak_kib()
try:
    read_rgb(sys.argv[1])
    message = None
except ImageError as exc:
    message = str(exc)
print(json.dumps({"message": message, "grew_kib": peak_kib() - baseline}))
"""


@pytest.mark.parametrize("name,make", [("bomb.gif", lambda: gif_bomb()), ("campaign.gif", lambda: gif_bomb(32768)),
                                       ("bomb.tiff", lambda: tiff_bomb())])
def test_bad_input_bombs_refused_before_any_decoder_allocates(tmp_path: Path, name: str, make) -> None:  # noqa: ANN001
    """A 35-byte GIF or a 390 kB TIFF declaring 20000^2 (or 32768^2) pixels is refused
    from its header: the child process's peak memory barely moves."""
    path = tmp_path / name
    path.write_bytes(make())
    done = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    result = json.loads(done.stdout)
    assert result["message"] is not None and "declares" in result["message"], result
    assert result["grew_kib"] < PEAK_ALLOWANCE_KIB, result


ANCILLARY_DEFECTS = {
    "iCCP": png_chunk(b"iCCP", b"profile\0\0" + zlib.compress(b"not a colour profile")),
    "sRGB": png_chunk(b"sRGB", b"\x09"),
    "tRNS": png_chunk(b"tRNS", b"\x01"),
    "eXIf": png_chunk(b"eXIf", b"not exif"),
    "zTXt": png_chunk(b"zTXt", b"k\0\0garbage"),
    "iTXt": png_chunk(b"iTXt", b"k\0\1\0\0\0garbage"),
    "sBIT": png_chunk(b"sBIT", b"\0\0\0"),
    "pHYs": png_chunk(b"pHYs", b"x"),
    "cICP": png_chunk(b"cICP", b"\0"),
    "acTL": png_chunk(b"acTL", bytes(8)),
}


@pytest.mark.parametrize("defect", list(ANCILLARY_DEFECTS))
def test_bad_input_png_ancillary_defects_decode_without_libpng_lines(defect: str, capfd: pytest.CaptureFixture) -> None:
    """A malformed chunk that does not change the pixels: decoded to the pixels written,
    and libpng prints nothing on stderr (it warned on each of these)."""
    rgb = np.random.default_rng(13).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in rgb)
    data = png_with(extra=ANCILLARY_DEFECTS[defect], image_data=zlib.compress(rows))
    decoded = decode_rgb(data)
    assert capfd.readouterr().err == ""
    assert np.array_equal(decoded, rgb)
