"""onnx_sise: SISE explanations of ONNX image classifiers with onnxruntime and a
compiled core, no PyTorch at explain time."""

from pkgutil import extend_path

# Run from a source checkout (`python -m onnx_sise` in the repository root), this
# directory shadows the installed package, and the compiled `_core` lives only in the
# installed copy: look there too.
__path__ = extend_path(__path__, __name__)

from .errors import ExportError, ImageError, ModelError, OptionError, OutputError, SiseError, TargetError
from .explainer import Explainer, Explanation
from .model_info import InputSpec, ModelInfo, Tap

__all__ = [
    "Explainer", "Explanation", "ExportError", "ImageError", "InputSpec", "ModelError", "ModelInfo",
    "OptionError", "OutputError", "SiseError", "Tap", "TargetError",
]
__version__ = "0.1.0"
