"""Exceptions raised by onnx_sise. Every one carries a single line that says what is
wrong and what to do; the CLI prints it and exits with code 2."""


class SiseError(Exception):
    """Base class of every error onnx_sise raises on bad input."""


class ImageError(SiseError):
    """An image is missing, unreadable or of an unsupported kind."""


class ModelError(SiseError):
    """A model file is missing, not ONNX, or not an explainable classifier."""


class PlainModelError(ModelError):
    """An ONNX classifier without explainable metadata: it must be prepared first."""


class TargetError(SiseError):
    """A requested class is out of the model's range."""


class ExportError(SiseError):
    """A model cannot be turned into an explainable ONNX (an unsupported layer, say)."""


class OutputError(SiseError):
    """An output file or directory cannot be written."""


class OptionError(SiseError, ValueError):
    """A method option is out of its domain (an unknown method, layer or rule)."""


class CancelledError(SiseError):
    """An explanation was cancelled from another thread (CancelToken.cancel)."""


class TimeLimitError(CancelledError):
    """An explanation ran past its max_seconds."""


class RequestError(SiseError):
    """A served request is malformed: not JSON, no instances, bad base64, a bad parameter."""
