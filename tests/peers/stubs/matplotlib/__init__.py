"""Stub of matplotlib: the names pytorch_grad_cam imports (tests/peers)."""

from . import lines, pyplot  # noqa: F401
