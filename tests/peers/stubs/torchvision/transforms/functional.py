"""Stub of torchvision.transforms.functional (tests/peers)."""

from _missing import missing

resize = missing("torchvision.transforms.functional.resize")
