"""Stub of scikit-learn: the names pytorch_grad_cam imports (tests/peers)."""

from . import decomposition  # noqa: F401
