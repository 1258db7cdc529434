"""SISE and Ada-SISE in one place: the attribution masks of a block (eq. 7), the masked
passes with onnxruntime IO binding (`io_binding`), and the fusion cascade (`fusion`)."""

from .method import adaptive_threshold, explain_sise

__all__ = ["adaptive_threshold", "explain_sise"]
