"""The server's Prometheus metrics, beside the ones the kserve SDK exports on /metrics
(request_explain_seconds, request_predict_seconds ...): what only we know."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("model_name", "method")
EXPLAIN_SECONDS = Histogram("onnx_sise_explanation_seconds", "one instance's explanation, from start to map",
                            LABELS, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
PASSES = Counter("onnx_sise_masked_passes_total", "masked forward passes run by explanations", LABELS)
OUTCOMES = Counter("onnx_sise_explain_requests_total", "explain requests by outcome",
                   ("model_name", "outcome"))  # ok, bad_request, overloaded, cancelled, timeout
QUEUE_DEPTH = Gauge("onnx_sise_queue_depth", "explain requests waiting for a slot", ("model_name",))
IN_FLIGHT = Gauge("onnx_sise_in_flight", "explain requests holding a slot", ("model_name",))
