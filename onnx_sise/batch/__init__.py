"""Explaining whole datasets on Ray Data (`python -m onnx_sise batch`, the `onnx_sise[ray]`
extra): `inputs` lists the images, `worker` holds the actors' Explainers, `outputs` writes
the maps and the manifest and knows what is done, `run` drives it (`explain_dataset`) and
`evaluate` runs `evaluate`'s per-image work the same way. Ray is imported only when a run
starts: the rest of onnx_sise never needs it."""

from .run import BatchSummary, RayMissingError, explain_dataset

__all__ = ["BatchSummary", "RayMissingError", "explain_dataset"]
