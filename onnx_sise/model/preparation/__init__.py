"""Preparing a plain ONNX classifier into an explainable ONNX with onnx, onnxruntime and
NumPy only (docs/design.md section 4). Stages, in the order they run:

- plain_model: read the file, tell the input and output kinds;
- static_graph: fix the shapes, fold the constants;
- taps: one feature tap per convolutional block;
- compose: the objectives to differentiate;
- differentiate, rules, emitter: the reverse-mode gradient as ONNX ops;
- subgraphs: join the scoring, gradient and mask-gradient graphs behind switches;
- check, float64: the check every preparation passes;
- build: all of the above, `prepare_onnx` / `prepare_model`.

The names below load on first use, so that `import onnx_sise` stays light.
"""

from __future__ import annotations

from importlib import import_module

from .options import CHECKS

_LAZY = {"prepare_model": ".build", "prepare_onnx": ".build", "InputOverrides": ".plain_model"}
__all__ = ["CHECKS", *_LAZY]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
