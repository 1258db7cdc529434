"""Stub of torchvision.transforms (tests/peers)."""

from _missing import missing

from . import functional  # noqa: F401

Compose = missing("torchvision.transforms.Compose")
Normalize = missing("torchvision.transforms.Normalize")
ToTensor = missing("torchvision.transforms.ToTensor")
