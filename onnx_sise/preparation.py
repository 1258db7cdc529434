"""Deprecated alias: `onnx_sise.preparation` moved to `onnx_sise.model.preparation`
(issue 14's layout); this name goes in the next release."""

import warnings

from .model.preparation import CHECKS, InputOverrides, prepare_model, prepare_onnx

warnings.warn("onnx_sise.preparation moved to onnx_sise.model.preparation; the old name goes in the next release",
              DeprecationWarning, stacklevel=2)

__all__ = ["CHECKS", "InputOverrides", "prepare_model", "prepare_onnx"]
