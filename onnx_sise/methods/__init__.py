"""Explanation methods by name (`METHODS`, filled by `registry.register`). Each takes a
Context (image, targets, session, masked-pass engine) and its option records and returns
one MethodResult per target. Importing a method's module registers it; UCAG refines every
method registered before it, so it comes last."""

# isort: off
from . import sise, cam, perturbation, sigcam  # noqa: F401  (they register, in this order)
from . import ucag  # noqa: F401  (refines the methods above: last)
# isort: on
from .context import Context
from .registry import METHODS, Method, checked, option_fields, register
from .result import MethodResult
from .ucag import UCAG_BASES

__all__ = ["METHODS", "UCAG_BASES", "Context", "Method", "MethodResult", "checked", "option_fields", "register"]
