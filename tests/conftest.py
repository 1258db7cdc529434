from __future__ import annotations

from pathlib import Path

import pytest
import skimage


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
