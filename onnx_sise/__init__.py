"""onnx_sise."""
