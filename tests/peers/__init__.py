"""The peers' own code (pytorch-grad-cam, OpenVINO XAI) for tests that compare our
methods with it. The peers are installed with --no-deps (Makefile, `install`): their
declared dependencies would pull torchvision (a CUDA build) and plotting and learning
libraries their modules import at the top, though the paths we test never call them.
`peer(name)` imports a peer with empty stand-ins for those names where the real package
is absent, and takes the stand-ins out of sys.modules again."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

import pytest

STAND_INS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops",
             "matplotlib", "matplotlib.pyplot", "matplotlib.lines", "sklearn", "sklearn.decomposition")


def _stand_in(name: str) -> ModuleType:
    module = ModuleType(name)

    def missing(attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)

        def call(*args: object, **kwargs: object) -> object:
            raise RuntimeError(f"{name}.{attribute} is a test stand-in: install {name.split('.')[0]} to use it")
        return call

    module.__getattr__ = missing  # type: ignore[method-assign]
    module.__path__ = []  # a package, so that its sub-modules import
    return module


def peer(name: str) -> ModuleType:
    """The peer package `name` (e.g. "pytorch_grad_cam"); skips the test when it is not installed."""
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"peer {name!r} is not installed (make install installs it)")
    added = [n for n in STAND_INS if importlib.util.find_spec(n.split(".")[0]) is None]
    sys.modules.update({n: _stand_in(n) for n in added})
    try:
        return importlib.import_module(name)
    finally:
        for n in added:
            del sys.modules[n]
