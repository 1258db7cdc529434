"""onnx_sise: SISE explanations of ONNX image classifiers with onnxruntime and a
compiled core, no PyTorch at explain time."""

from .errors import ExportError, ImageError, ModelError, OutputError, SiseError, TargetError
from .explainer import Explainer, Explanation
from .model_info import InputSpec, ModelInfo, Tap

__all__ = [
    "Explainer", "Explanation", "ExportError", "ImageError", "InputSpec", "ModelError", "ModelInfo",
    "OutputError", "SiseError", "Tap", "TargetError",
]
__version__ = "0.1.0"
