"""A local Ray of 2 CPUs, started once for the batch tests, and the 40 images they explain."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_sise.cli.terminal import STOP_SIGNALS

# Real photos of scikit-image: colour, grey, RGBA, large and small.
PHOTOS = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg",
          "retina.jpg", "ihc.png", "logo.png", "camera.png", "horse.png", "coins.png")
BROKEN = ("empty.png", "text.jpg", "truncated.png", "huge.png")  # test_run.py checks their error rows


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """ray.init(num_cpus=2) in this process for one test module (the rest of the suite runs
    without Ray): explain_dataset uses it; subprocesses join it by the address this yields.
    ray.init takes SIGTERM over (sys.exit): the test process gets its own handlers back."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        for number, handler in handlers.items():
            signal.signal(number, handler)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="session")
def forty_images(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 40 images: 12 real photos, a half-size PNG and a quarter-size JPEG copy
    of each in sub-folders, and 4 broken files (empty, text, a truncated PNG, a PNG whose
    header declares 100000 x 100000 pixels)."""
    folder = tmp_path_factory.mktemp("forty")
    (folder / "half").mkdir()
    (folder / "quarter" / "deeper").mkdir(parents=True)
    for name in PHOTOS:
        data = (photos / name).read_bytes()
        (folder / name).write_bytes(data)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        height, width = image.shape[:2]
        half = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "half" / f"{Path(name).stem}.png"), half)
        quarter = cv2.resize(image[..., :3] if image.ndim == 3 else image, (width // 4, height // 4),
                             interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "quarter" / "deeper" / f"{Path(name).stem}.jpg"), quarter)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image\n")
    (folder / "truncated.png").write_bytes((photos / "coffee.png").read_bytes()[:5000])
    huge = bytearray((photos / "coffee.png").read_bytes()[:33])
    huge[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    (folder / "huge.png").write_bytes(bytes(huge))
    assert sum(1 for p in folder.rglob("*") if p.is_file()) == 40
    return folder
