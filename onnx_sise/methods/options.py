"""How a method declares its options: a frozen dataclass whose fields are made by
`option(default, Domain(...))`, each with its default, its domain (the type it must have,
its range or choices), its help text and its command-line group in one place. Ranges also
bound what an option can make the library allocate or run (a mask count, a patch grid,
integration points). The options more than one method reads are made here."""

from __future__ import annotations

import math
import numbers
from dataclasses import Field, dataclass, field
from typing import Any

from ..images.model_input import RESIZE_METHODS
from ..model.openvino import PRECISIONS

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
    """A field of an options record: its default and its Domain."""
    return field(default=default, metadata={"domain": domain})


def layer_option() -> Any:  # noqa: ANN401
    """The tap a CAM map is made at: Grad-CAM and its kin, Score-CAM, SIGCAM's base mask."""
    return option(None, Domain("str", optional=True, group=CAM,
                               help="tap of the CAM methods and Score-CAM, e.g. block3 (default: the deepest)"))


def seed_option() -> Any:  # noqa: ANN401
    return option(0, Domain("int", 0, MAX_SEED, group=RISE, help="random seed of RISE's masks and SIGCAM's noise"))


def domain_of(option_field: Field) -> Domain:
    return option_field.metadata["domain"]


# Not a method's option but the image path's (Explainer(resize=...), --resize): how the
# photo is resized to the model's input (images/model_input.py).
RESIZE = Domain("str", choices=RESIZE_METHODS,
                help="resize of the photo to the model's input: area (cv2.INTER_AREA when it shrinks, "
                     "else INTER_LINEAR) or linear (INTER_LINEAR always)")
DEFAULT_RESIZE = "area"

# Not a method's option but the session's (Explainer(precision=...), --precision): the
# arithmetic of OpenVINO's masked passes (model/openvino.py).
PRECISION = Domain("str", choices=PRECISIONS,
                   help="arithmetic of the masked passes with provider openvino: f32, bf16 (CPUs with AVX512_BF16 "
                        "or AMX), or auto (bf16 where the CPU has it, else f32); float32 with other providers")
