"""CONTRIBUTING.md's recipe for a method, followed by a test: a toy method with one
option registers itself and is then explained through the API and from the command
line, its option a flag there, checked by its Domain in both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from onnx_sise import Explainer, OptionError
from onnx_sise.cli import build_parser, main
from onnx_sise.methods import METHODS, Context, Method, MethodResult, option_fields, register
from onnx_sise.methods.options import Domain, option


@dataclass(frozen=True)
class CentreOptions:
    """centre_width: the Gaussian's standard deviation, a fraction of the image's side."""

    centre_width: float = option(0.25, Domain("real", 0, 1, low_open=True, group="Centre prior",
                                              help="width of the Gaussian, fraction of the image side"))


def explain_centre(ctx: Context, options: CentreOptions) -> list[MethodResult]:
    """The centre-bias baseline: a Gaussian at the image's centre, the same for every target."""
    height, width = ctx.size
    y, x = np.mgrid[0:height, 0:width]
    spread = 2 * (options.centre_width * max(height, width)) ** 2
    saliency = np.exp(-((y - (height - 1) / 2) ** 2 + (x - (width - 1) / 2) ** 2) / spread).astype(np.float32)
    return [MethodResult(saliency=saliency, block_maps={}) for _ in ctx.targets]


@pytest.fixture
def centre() -> Iterator[Method]:
    """The toy method, registered for one test (conftest gives back the signal handlers
    that main() leaves ignored)."""
    method = register(Method("centre", explain_centre, (CentreOptions,), "a centred Gaussian (the centre bias)"))
    try:
        yield method
    finally:
        del METHODS["centre"]


def test_a_toy_method_is_found_by_the_api_and_the_cli(centre: Method, lite0_path: Path, photos: Path,
                                                       tmp_path: Path) -> None:
    explainer = Explainer(lite0_path)
    narrow = explainer.explain(photos / "coffee.png", method="centre", centre_width=0.1)
    wide = explainer.explain(photos / "coffee.png", method="centre")
    height, width = narrow.saliency.shape
    assert np.unravel_index(int(np.argmax(narrow.saliency)), narrow.saliency.shape) in {
        (height // 2 - 1, width // 2 - 1), (height // 2, width // 2), (height // 2 - 1, width // 2),
        (height // 2, width // 2 - 1)}
    assert narrow.saliency.mean() < wide.saliency.mean()
    with pytest.raises(OptionError, match="centre_width must lie in"):
        explainer.explain(photos / "coffee.png", method="centre", centre_width=2.0)

    assert "centre_width" in option_fields()
    args = build_parser().parse_args(["explain", str(lite0_path), "x.png", "--method", "centre",
                                      "--centre-width", "0.1"])
    assert (args.method, args.centre_width) == ("centre", 0.1)
    assert "--centre-width" in build_parser()._subparsers._group_actions[0].choices["explain"].format_help()
    code = main(["explain", str(lite0_path), str(photos / "coffee.png"), "--method", "centre", "--centre-width", "0.1",
                 "--out", str(tmp_path)])
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "coffee.centre.npy"), narrow.saliency)
    assert main(["explain", str(lite0_path), str(photos / "coffee.png"), "--method", "centre", "--centre-width",
                 "2", "--out", str(tmp_path / "refused")]) == 2


def test_an_option_declared_twice_must_agree() -> None:
    @dataclass(frozen=True)
    class Clash:
        seed: int = option(1, Domain("int", 0, 10))

    with pytest.raises(ValueError, match="differs"):
        register(Method("clash", lambda ctx, o: [], (Clash,), "clashes"))
    assert "clash" not in METHODS
