from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage

from onnx_sise.cli.terminal import STOP_SIGNALS


@pytest.fixture(autouse=True)
def stop_signal_handlers_given_back() -> Iterator[None]:
    """The command line run in-process (`cli.main`) leaves SIGINT, SIGTERM and SIGHUP
    ignored when it returns (its process is about to exit); a later test's child process
    would inherit them ignored. Every test gets the handlers back as they were."""
    handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


@pytest.fixture(scope="session")
def photos() -> Path:
    """Real photos shipped inside scikit-image."""
    return Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="session")
def lite0_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ImageNet EfficientNet-Lite0 as an explainable ONNX, exported once."""
    from onnx_sise_export import export_zoo

    path = tmp_path_factory.mktemp("models") / "lite0.sise.onnx"
    export_zoo("efficientnet-lite0", str(path))
    return path


@pytest.fixture(scope="session")
def lite0_torch():  # noqa: ANN201
    """The eager EfficientNet-Lite0 with frozen weights, for independent references."""
    from onnx_sise_export import build_zoo_model

    model, _ = build_zoo_model("efficientnet-lite0")
    for p in model.parameters():
        p.requires_grad_(False)
    return model
