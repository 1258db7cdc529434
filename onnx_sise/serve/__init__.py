"""`python -m onnx_sise serve`: explanations over HTTP as a KServe explainer (the kserve
SDK; `pip install onnx_sise[serve]`). payload parses requests, limits bounds the work,
metrics counts it, model is the kserve.Model, server wires them into kserve's ModelServer.

kserve parses sys.argv when it is first imported (kserve.model_server): it is imported
here with an empty command line, so that our own flags never reach its parser."""

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve  # noqa: F401
finally:
    sys.argv = _argv
