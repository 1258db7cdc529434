"""The methods' options, each with its default and its domain in one place: the type it
must have, its range or choices. Ranges also bound what an option can make the library
allocate or run (a mask count, a patch grid, integration points)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import OptionError
from ..fusion import GATES
from .igos import IgosSettings
from .sigcam import AOP_BASES, DEFAULT_NOISE

ADA_RULES = ("otsu", "paper")
MAX_SEED = 2**63 - 1
# The command line's option groups.
SISE, CAM, RISE = "SISE / Ada-SISE", "CAM methods and Score-CAM", "RISE"
SIGCAM, UCAG = "SIGCAM / AOP (--method sigcam)", "UCAG (--refine ucag, --method ucag-*)"


@dataclass(frozen=True)
class Domain:
    """What values an option takes: `kind` "int", "real" (finite) or "str"; an inclusive
    range [low, high] (an open low end with `low_open`), or `choices`; None allowed when
    `optional`."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    meaning: str = ""
    help: str = ""  # the command line's help text, without the default
    group: str = ""  # the command line's option group

    def problem(self, name: str, value: object) -> str | None:
        """Why `value` is not in the domain (one phrase), or None."""
        if value is None and self.optional:
            return None
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                wanted = f"one of {', '.join(self.choices)}" if self.choices else "a string"
                return f"{name} must be {wanted}, got {value!r}"
            return None
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        real = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not (integral if self.kind == "int" else real):
            return f"{name} must be {'an integer' if self.kind == 'int' else 'a finite number'}, got {value!r}"
        below = value <= self.low if self.low_open else value < self.low  # type: ignore[operator]
        if (self.low is not None and below) or (self.high is not None and value > self.high):  # type: ignore[operator]
            return f"{name} must lie in {self.span()}{self.meaning}, got {value!r}"
        return None

    def span(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{']' if self.high is not None else ')'}"


def option(default: Any, domain: Domain) -> Any:  # noqa: ANN401
    return field(default=default, metadata={"domain": domain})


@dataclass(frozen=True)
class MethodOptions:
    """mu: SISE eq. 7 threshold. fusion: "hard" or "soft" Otsu gate. layer: the tap of
    the CAM methods and Score-CAM (default: deepest). rise_*: RISE mask count, grid
    cells, keep probability. seed: RISE's and SIGCAM's generator seed. ada_rule: Ada-SISE
    threshold ("otsu" or the literal "paper" eq. 5).

    SIGCAM / AOP (AOP paper): sigcam_base, the activation map of the base mask (wgradcam,
    gradcam, gradcam++, or none for plain I-GOS); sigcam_theta, sigcam_lambda: eq. 5
    (ImageNet values); sigcam_iterations, sigcam_warmup (iterations against the light
    blur), sigcam_steps (integration points), sigcam_l1, sigcam_tv: eq. 6 and I-GOS;
    sigcam_noise: std of the integration noise in units of the 0..1 pixel range.
    UCAG: ucag_n (n x n patches), ucag_rho (patch size / image size); see methods/ucag.py."""

    mu: float = option(0.0, Domain("real", 0, None, meaning=" (SISE eq. 7)", group=SISE,
                                   help="SISE feature-map threshold, eq. 7"))
    fusion: str = option("hard", Domain("str", choices=GATES, group=SISE,
                                        help="Otsu gate of the fusion cascade; hard as in the paper"))
    layer: str | None = option(None, Domain("str", optional=True, group=CAM,
                                            help="tap of the CAM methods and Score-CAM, e.g. block3 (default: the "
                                                 "deepest)"))
    rise_masks: int = option(2000, Domain("int", 1, 100_000, group=RISE, help="RISE mask count"))
    rise_cells: int = option(7, Domain("int", 1, 64, group=RISE, help="RISE grid cells per side"))
    rise_p: float = option(0.5, Domain("real", 0, 1, low_open=True, group=RISE,
                                       help="RISE probability of keeping a cell"))
    seed: int = option(0, Domain("int", 0, MAX_SEED, group=RISE, help="random seed of RISE's masks and SIGCAM's noise"))
    ada_rule: str = option("otsu", Domain("str", choices=ADA_RULES, group=SISE,
                                          help="Ada-SISE threshold: otsu, or the literal eq. 5 (paper)"))
    sigcam_base: str = option("wgradcam", Domain("str", choices=AOP_BASES, group=SIGCAM,
                                                 help="activation map of the base mask; none = plain I-GOS"))
    sigcam_theta: float = option(0.7, Domain("real", 0, 1, meaning=" (AOP eq. 5)", group=SIGCAM,
                                             help="eq. 5 filter threshold"))
    sigcam_lambda: float = option(0.15, Domain("real", 0, 1, meaning=" (AOP eq. 5)", group=SIGCAM,
                                               help="eq. 5 modulating factor"))
    sigcam_iterations: int = option(IgosSettings.iterations, Domain("int", 1, 1000, group=SIGCAM,
                                                                    help="I-GOS iterations"))
    sigcam_warmup: int = option(IgosSettings.warmup, Domain("int", 0, 1000, group=SIGCAM,
                                                            help="first iterations against a light blur"))
    sigcam_steps: int = option(IgosSettings.integration_steps, Domain("int", 1, 10_000, group=SIGCAM,
                                                                      help="integrated-gradient points"))
    sigcam_l1: float = option(IgosSettings.l1, Domain("real", 0, 1e6, group=SIGCAM, help="eq. 6 L1 weight"))
    sigcam_tv: float = option(IgosSettings.tv, Domain("real", 0, 1e6, group=SIGCAM,
                                                      help="eq. 6 total-variation weight"))
    sigcam_noise: float = option(DEFAULT_NOISE, Domain("real", 0, 10, group=SIGCAM,
                                                       help="integration noise std, fraction of the pixel range"))
    ucag_n: int = option(6, Domain("int", 2, 32, meaning=" (n x n overlapping patches)", group=UCAG,
                                   help="n x n patches"))
    ucag_rho: float = option(0.555, Domain("real", 0, 1, low_open=True, meaning=" (patch size / image size)",
                                           group=UCAG, help="patch size / image size"))

    def problems(self) -> list[str]:
        """What is wrong with the options, one phrase each."""
        found = [f.metadata["domain"].problem(f.name, getattr(self, f.name)) for f in fields(self)]
        return [p for p in found if p is not None]

    def igos(self) -> IgosSettings:
        return IgosSettings(iterations=self.sigcam_iterations, integration_steps=self.sigcam_steps, l1=self.sigcam_l1,
                            tv=self.sigcam_tv, warmup=self.sigcam_warmup)


def domain_of(name: str) -> Domain:
    return MethodOptions.__dataclass_fields__[name].metadata["domain"]


def checked(options: dict[str, object]) -> MethodOptions:
    """MethodOptions from keyword arguments, each checked against its domain (OptionError)."""
    unknown = sorted(set(options) - set(MethodOptions.__dataclass_fields__), key=str)
    if unknown:
        raise OptionError(f"unknown method options {unknown}: see onnx_sise.methods.MethodOptions")
    opts = replace(MethodOptions(), **options)
    problems = opts.problems()
    if problems:
        raise OptionError("; ".join(problems))
    return opts
