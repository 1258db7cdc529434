"""Explanation methods by name (`METHODS`, filled by `registry.register`). Each takes a
Context (image, targets, session, masked-pass engine) and its option records and returns
one MethodResult per target. Importing a method's module registers it; UCAG refines every
method registered before it, so it comes last."""

# isort: off
from . import sise, cam, perturbation, sigcam, feature_perturbation, aise  # noqa: F401  (they register, in order)
from . import ucag  # noqa: F401  (refines the methods above: last)
# isort: on
from .context import Context
from .registry import METHODS, Method, checked, option_fields, register
from .result import MethodResult
from .ucag import UCAG_BASES

__all__ = ["METHODS", "UCAG_BASES", "Context", "Method", "MethodResult", "checked", "option_fields", "register"]


def __getattr__(name: str) -> object:
    """MethodOptions, the one flat record of every option, is deprecated: each method has
    its own record now (Method.options); option_fields() lists them all."""
    if name == "MethodOptions":
        import warnings
        from dataclasses import field, make_dataclass

        warnings.warn("onnx_sise.methods.MethodOptions is deprecated: each method has its own options record "
                      "(METHODS[name].options), option_fields() lists every option; it goes in the next release",
                      DeprecationWarning, stacklevel=2)
        flat = [(option_name, option.type, field(default=option.default, metadata=option.metadata))
                for option_name, option in option_fields().items()]
        return make_dataclass("MethodOptions", flat, frozen=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
