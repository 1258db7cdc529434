"""The Python API on the real EfficientNet-Lite0."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from onnx_sise import Explainer, ImageError, OptionError, TargetError
from onnx_sise.methods.context import Context
from onnx_sise.methods.sise.method import block_maps, select_positive


@pytest.fixture(scope="module")
def explainer(lite0_path: Path) -> Explainer:
    return Explainer(lite0_path, batch_size=16)


def test_explain_returns_the_documented_fields(explainer: Explainer, photos: Path) -> None:
    from onnx_sise.images.decode import read_rgb

    rgb = read_rgb(photos / "chelsea.png")
    result = explainer.explain(rgb, mu=0.5)
    assert result.target == 285 and 0.5 < result.score <= 1.0 and result.label == explainer.info.labels[285]
    assert result.saliency.shape == rgb.shape[:2] and result.saliency.dtype == np.float32
    assert list(result.block_maps) == [t.name for t in explainer.info.taps]
    assert all(m.shape == (224, 224) for m in result.block_maps.values())
    assert all(result.masks_used[b] <= result.masks_selected[b] <= t.channels
               for b, t in zip(result.masks_used, explainer.info.taps))
    assert result.seconds > 0 and result.forward_passes == sum(result.masks_used.values())
    looser = explainer.explain(rgb, mu=0.0)
    assert looser.forward_passes > result.forward_passes


def test_mu_filters_by_fraction_of_the_largest_alpha() -> None:
    alpha = np.array([-1.0, 0.0, 0.2, 0.5, 1.0])
    assert select_positive(alpha).tolist() == [2, 3, 4]
    assert select_positive(alpha, mu=0.5).tolist() == [4]
    assert select_positive(np.array([-3.0, -1.0])).size == 0
    with pytest.raises(ValueError, match="mu must be >= 0"):
        select_positive(alpha, mu=-0.1)


def test_target_and_image_errors(explainer: Explainer, photos: Path) -> None:
    with pytest.raises(TargetError, match="out of range"):
        explainer.explain(photos / "coffee.png", target=-1)
    with pytest.raises(ImageError, match="uint8"):
        explainer.explain(np.zeros((8, 8), np.float32))


def test_peak_memory_does_not_grow_with_the_number_of_masks(explainer: Explainer, photos: Path) -> None:
    x, _ = explainer.preprocess(photos / "coffee.png")
    ctx = Context(model=explainer.model, image=x, targets=[967],
                  batch=np.empty((16, *x.shape), np.float32))
    deepest = ctx.score_features(967)[-1]
    flat = deepest.activations.reshape(deepest.activations.shape[0], -1)
    order = np.flatnonzero(flat.max(axis=1) > flat.min(axis=1))
    assert order.size >= 256
    peaks = []
    for count in (64, 256):
        tracemalloc.start()
        _, used, _ = block_maps(ctx, 4, [order[:count]])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert used[0] == count
    assert peaks[1] < 1.25 * peaks[0], peaks


FORK_SCRIPT = """
import os, sys
import numpy as np
import onnx_sise
explainer = onnx_sise.Explainer(sys.argv[1], threads=int(sys.argv[3]))
parent = explainer.explain(sys.argv[2], method="sise").saliency  # the core's OpenMP team is up now
child = os.fork()
if child == 0:
    try:
        inherited = explainer.explain(sys.argv[2], method="sise").saliency
        fresh = onnx_sise.Explainer(sys.argv[1], threads=int(sys.argv[3])).explain(sys.argv[2], method="sise").saliency
        os._exit(0 if np.array_equal(inherited, parent) and np.array_equal(fresh, parent) else 3)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(child, 0)
print("child exit", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("threads", [1, 0])
def test_fault_fork_child_explains_like_its_parent(lite0_path: Path, photos: Path, threads: int) -> None:
    """Pre-fork servers: a child forked after the parent explained (OpenMP's thread team
    does not survive fork) explains with the inherited Explainer and with a new one."""
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(lite0_path), str(photos / "coffee.png"),
                           str(threads)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "0", done.stdout + done.stderr


def test_bad_input_threads_are_capped_at_the_cpus(lite0_path: Path) -> None:
    from onnx_sise.explainer import available_cpus

    explainer = Explainer(lite0_path, threads=2**31)
    assert explainer.model.options.intra_op_num_threads == available_cpus()
    with pytest.raises(OptionError, match="threads must be a positive integer"):
        Explainer(lite0_path, threads=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("arguments,fragment", [
    ({"model": None}, "model must be a path or the model's bytes, got NoneType"),
    ({"model": 123}, "model must be a path or the model's bytes, got int"),
    ({"model": "a\0b.onnx"}, "holds a NUL byte"),
    ({"cache_dir": 1}, "cache_dir must be a path"),
    ({"scoring_model": b"bytes"}, "scoring_model must be a path"),
    ({"providers": "CPUExecutionProvider"}, "providers must be a list of names"),
    ({"providers": [1]}, "providers must be a list of names"),
    ({"batch_size": 3000}, "batch_size must be an integer in [1, 1024]"),
    ({"resize": "cubic"}, "resize must be one of area, linear, got 'cubic'"),
])
def test_bad_input_explainer_arguments_of_the_wrong_type(lite0_path: Path, arguments: dict, fragment: str,
                                                         capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(OptionError) as raised:
        Explainer(**{"model": lite0_path, **arguments})
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert capfd.readouterr().err == ""


def test_bad_input_a_huge_max_seconds_is_no_limit(explainer: Explainer, photos: Path) -> None:
    assert explainer.explain(photos / "coffee.png", method="gradcam", max_seconds=2**2000).target == 967


class BrokenPath:
    def __init__(self, returns: object) -> None:
        self.returns = returns

    def __fspath__(self) -> object:
        if self.returns is None:
            raise ZeroDivisionError("a stranger's __fspath__")
        return self.returns


@pytest.mark.parametrize("returns", [None, 5])
def test_bad_input_path_objects_whose_fspath_misbehaves(lite0_path: Path, explainer: Explainer, returns: object) -> None:
    with pytest.raises(OptionError, match="model must be a path"):
        Explainer(BrokenPath(returns))  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="cache_dir must be a path"):
        Explainer(lite0_path, cache_dir=BrokenPath(returns))  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="image path must be a str"):
        explainer.explain(BrokenPath(returns), method="gradcam")  # type: ignore[arg-type]


def test_bad_input_progress_and_max_seconds_types(explainer: Explainer, photos: Path) -> None:
    from fractions import Fraction

    from onnx_sise import TimeLimitError

    with pytest.raises(OptionError, match="progress must be True or False"):
        explainer.explain(photos / "coffee.png", method="gradcam", progress="x")  # type: ignore[arg-type]
    for seconds in (np.float32(1e-9), Fraction(1, 10**9)):
        with pytest.raises(TimeLimitError, match="stopped at max_seconds=1e-09"):
            explainer.explain(photos / "coffee.png", method="sise", max_seconds=seconds)  # type: ignore[arg-type]
