"""onnx_sise: SISE explanations of ONNX image classifiers with onnxruntime and a
compiled core, no PyTorch at explain time."""

from pkgutil import extend_path

# Run from a source checkout (`python -m onnx_sise` in the repository root), this
# directory shadows the installed package, and the compiled `_core` lives only in the
# installed copy: look there too.
__path__ = extend_path(__path__, __name__)

import logging

from .cancel import CancelToken
from .errors import (
    CancelledError,
    ExportError,
    ImageError,
    ModelError,
    OptionError,
    OutputError,
    PlainModelError,
    SiseError,
    TargetError,
    TimeLimitError,
)
from .explainer import Explainer, Explanation
from .model.info import InputSpec, ModelInfo, Tap

# A library logs, the application decides where to: nothing reaches stderr unless it asks.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CancelToken", "CancelledError", "Explainer", "Explanation", "ExportError", "ImageError", "InputSpec",
    "ModelError", "ModelInfo", "OptionError", "OutputError", "PlainModelError", "SiseError", "Tap", "TargetError",
    "TimeLimitError",
]
__version__ = "0.1.0"
