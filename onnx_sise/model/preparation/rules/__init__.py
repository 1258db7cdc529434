"""Vector-Jacobian products of the ONNX ops CNN classifiers use, written as ONNX ops
(docs/design.md section 4, step 6), one module per family. Each rule gets the gradient of a
node's outputs and returns the gradient of each input that needs one (None for the
rest). Shapes are static (static_graph.py), so pads, counts, index maps and broadcast
axes are NumPy constants computed here. No weight gradients: only the data path is
differentiated. Importing this package fills RULES."""

from . import activations, arithmetic, convolution, data_movement, normalisation  # noqa: F401  (they register)
from .base import RULES, Rule, Step

__all__ = ["RULES", "Rule", "Step"]
