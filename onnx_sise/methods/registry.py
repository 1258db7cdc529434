"""Every explanation method by name. A method module declares its options record
(methods/options.py) and calls `register` when imported; the Explainer, `evaluate` and
the command line know the methods only from here (CONTRIBUTING.md, "Adding a method")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from typing import Any

from ..errors import OptionError
from .options import domain_of


@dataclass(frozen=True)
class Method:
    """name: what `explain(method=...)` and `--method` take. explain(ctx, *records): one
    MethodResult per target of the Context, given one instance of each record in
    `options` (frozen dataclasses of option() fields), in that order. summary: one line
    for the command line's help. paper: where its equations come from. io_binding: its
    masked passes can run through onnxruntime IO binding (Context.io_binding), which the
    Explainer then sets up. gradients(records, info): what its gradient call needs (a
    context.GradientNeed: the objective and the shallowest tap), where the method makes
    one call whose features and scores serve it whole; the Explainer then makes that
    call first and takes the scores (and the top classes) from it, with no forward pass
    of its own."""

    name: str
    explain: Callable[..., list[Any]]
    options: tuple[type, ...]
    summary: str
    paper: str = ""
    io_binding: bool = False
    gradients: Callable[..., Any] | None = None


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method`; an option name it shares with a method registered before must have
    the same default and Domain (one flag, one check)."""
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is registered already")
    known = option_fields()
    for record in method.options:
        for option in fields(record):
            if "domain" not in option.metadata:
                raise ValueError(f"{record.__name__}.{option.name} has no Domain: make it with option()")
            same = known.get(option.name)
            if same is not None and (same.default, domain_of(same)) != (option.default, domain_of(option)):
                raise ValueError(f"{record.__name__}.{option.name} differs from the option of that name that "
                                 "another method declares")
    METHODS[method.name] = method
    return method


def option_fields() -> dict[str, Field]:
    """Every option of every registered method, by name (shared ones once)."""
    found: dict[str, Field] = {}
    for method in METHODS.values():
        for record in method.options:
            for option in fields(record):
                found.setdefault(option.name, option)
    return found


def checked(method: object, options: dict[str, object]) -> tuple[object, ...]:
    """The option records of `method` made from keyword arguments: every name must be an
    option of some method and every value in its Domain (OptionError otherwise); options
    of other methods are checked and ignored, as the command line passes them all."""
    if not isinstance(method, str) or method not in METHODS:
        raise OptionError(f"method must be one of {', '.join(METHODS)}, got {method!r:.60}")
    known = option_fields()
    unknown = sorted(set(options) - set(known), key=str)
    if unknown:
        raise OptionError(f"unknown method options {unknown}: see onnx_sise.methods.option_fields()")
    problems = [domain_of(known[name]).problem(name, value) for name, value in options.items()]
    if any(problems):
        raise OptionError("; ".join(p for p in problems if p))
    return tuple(record(**{f.name: options[f.name] for f in fields(record) if f.name in options})
                 for record in METHODS[method].options)
