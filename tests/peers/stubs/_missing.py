"""What every stubbed name is: a class that refuses to be made or called."""

from __future__ import annotations


def missing(qualified: str) -> type:
    """A stand-in for `qualified` (e.g. "torchvision.ops.box_iou") that raises when used."""

    class Missing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError(f"{qualified} is an import stub of tests/peers: the peer called it on a tested path")

    Missing.__name__ = Missing.__qualname__ = qualified.rpartition(".")[2]
    return Missing
