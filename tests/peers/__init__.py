"""The peers' own code (pytorch-grad-cam, ...) for tests that compare our methods with it.

The peers are installed with --no-deps (Makefile, `install`): their declared dependencies
would pull torchvision, whose PyPI builds are CUDA builds that fail against our CPU torch,
and heavy plotting and learning libraries. Their modules import those names at the top
even where the paths we test never call them, so `peer(name)` imports a peer with the
import stubs of `stubs/` (torchvision, matplotlib, sklearn: only the names imported, each
raising if called) behind every real package, then takes the stubs out of sys.path and
sys.modules again: a real package installed beside them always wins, and no other test
sees a stub."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

STUBS = Path(__file__).resolve().parent / "stubs"


def peer(name: str) -> ModuleType:
    """The peer package `name` (e.g. "pytorch_grad_cam"), imported with the stubs as fallback;
    skips the test when the peer is not installed (a failed import of an installed peer fails)."""
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"peer {name!r} is not installed (make install installs it)")
    sys.path.append(str(STUBS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(STUBS))
        for module in [m for m, v in sys.modules.items() if str(getattr(v, "__file__", "")).startswith(str(STUBS))]:
            del sys.modules[module]
