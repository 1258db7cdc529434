"""The actor pool's plan from the cluster's resources, and one image's work in an actor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx_sise.batch.outputs import Outputs
from onnx_sise.batch.worker import MAX_THREADS_PER_ACTOR, Plan, explain_item, plan_pool
from onnx_sise.errors import ModelError, OptionError


@pytest.mark.parametrize(("cpus", "gpus", "expected"), [
    ([2.0], 0, Plan(2, 1, 0.0, "cpu")),
    ([16.0], 0, Plan(4, 4, 0.0, "cpu")),
    ([8.0, 8.0, 3.0], 0, Plan(9, 2, 0.0, "cpu")),  # 4 + 4 + 1 actors of 2 threads
    ([64.0], 0, Plan(16, MAX_THREADS_PER_ACTOR, 0.0, "cpu")),
    ([8.0, 8.0], 2, Plan(2, 2, 1.0, "cuda")),
])
def test_the_pool_fills_the_cluster(cpus: list[float], gpus: float, expected: Plan) -> None:
    assert plan_pool(cpus, gpus) == expected


def test_explicit_pools_and_refusals() -> None:
    assert plan_pool([4.0], 0, actors=1, threads=4) == Plan(1, 4, 0.0, "cpu")
    assert plan_pool([4.0], 1, provider="cpu") == Plan(4, 1, 0.0, "cpu")
    assert plan_pool([4.0], 1, actors=2) == Plan(2, 1, 0.5, "cuda")
    for kwargs, message in (({"actors": 5, "threads": 1}, "do not fit"), ({"threads": 8}, "largest node"),
                            ({"provider": "cuda"}, "no"), ({"actors": 0}, "positive"), ({"provider": "tpu"}, "cpu")):
        with pytest.raises(OptionError, match=message):
            plan_pool([4.0], 0, **kwargs)
    with pytest.raises(OptionError, match="no node with a CPU"):
        plan_pool([0.0], 0)


class FakeExplainer:
    """Explainer.explain's result for anything that decodes; a NaN model for one photo."""

    def explain(self, rgb: np.ndarray, target: object, method: str, **options: object) -> object:
        from types import SimpleNamespace

        if rgb.shape[0] == 1:
            raise ModelError("the model returned NaN")
        return SimpleNamespace(target=3, label="cat", score=0.75, passes=7,
                               saliency=np.full(rgb.shape[:2], 0.5, np.float32))


def test_an_image_is_explained_once_and_a_bad_one_is_an_error_row(tmp_path: Path, photos: Path) -> None:
    import cv2

    outputs = Outputs(tmp_path / "out", "gradcam")
    source = str(photos / "coffee.png")
    first = explain_item(FakeExplainer(), outputs, "coffee.png", source, None, None, {})  # type: ignore[arg-type]
    assert (first["fresh"], first["status"], first["target"], first["passes"]) == (True, "ok", 3, 7)
    again = explain_item(None, outputs, "coffee.png", source, None, None, {})  # type: ignore[arg-type]
    assert again == {**first, "fresh": False}
    broken = explain_item(FakeExplainer(), outputs, "bad.png", source, b"junk", None, {})  # type: ignore[arg-type]
    assert broken["status"] == "error" and "cannot decode" in broken["error"] and outputs.row("bad.png")
    assert not outputs.maps("bad.png")[0].exists()
    one_row = cv2.imencode(".png", np.zeros((1, 4, 3), np.uint8))[1].tobytes()
    nan = explain_item(FakeExplainer(), outputs, "nan.png", "x", one_row, None, {})  # type: ignore[arg-type]
    assert (nan["status"], nan["error"]) == ("error", "the model returned NaN")
    retried = explain_item(FakeExplainer(), outputs, "nan.png", "x", one_row, None, {}, True)  # type: ignore[arg-type]
    assert retried["fresh"] and retried["status"] == "error"
