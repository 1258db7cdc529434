"""Stub of matplotlib.pyplot (tests/peers): any attribute is a stand-in that raises."""

from _missing import missing


def __getattr__(name: str) -> type:
    return missing(f"matplotlib.pyplot.{name}")
