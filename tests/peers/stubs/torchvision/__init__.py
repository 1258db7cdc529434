"""Stub of torchvision: the names pytorch_grad_cam imports (tests/peers)."""

from types import SimpleNamespace

from _missing import missing

from . import transforms  # noqa: F401

ops = SimpleNamespace(box_iou=missing("torchvision.ops.box_iou"))
