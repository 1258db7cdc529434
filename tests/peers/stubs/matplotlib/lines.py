"""Stub of matplotlib.lines (tests/peers)."""

from _missing import missing

Line2D = missing("matplotlib.lines.Line2D")
