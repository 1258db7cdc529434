"""SISE through onnxruntime IO binding (methods/sise/io_binding.py) against the host path, whose
maps the eager-PyTorch reference checks (test_sise_reference.py). On the CPU this runs
the whole device pipeline, buffers and binding included, up to the provider; with a GPU
and onnxruntime-gpu the same test runs it on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnx_sise
from onnx_sise import kernels
from onnx_sise.errors import ModelError

PROVIDERS = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@pytest.fixture(autouse=True)
def _skip_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_cuda") and (
            kernels.cuda_device_count() == 0 or "CUDAExecutionProvider" not in ort.get_available_providers()):
        pytest.skip("no CUDA device with onnxruntime-gpu (run on a GPU machine)")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("method,fixed_batch", [("sise", False), ("ada-sise", False), ("sise", True)])
def test_io_binding_gives_the_host_maps(lite0_path: Path, photos: Path, provider: str, method: str,
                                           fixed_batch: bool) -> None:
    host = onnx_sise.Explainer(lite0_path, threads=2, io_binding=False)
    bound = onnx_sise.Explainer(lite0_path, provider=provider, threads=2, io_binding=True, fixed_batch=fixed_batch)
    assert bound.io_binding and not host.io_binding
    targets = [967, 968]  # espresso and cup: different selections, one union of masks
    expected = host.explain_targets(photos / "coffee.png", targets, method=method)
    actual = bound.explain_targets(photos / "coffee.png", targets, method=method)
    for e, a in zip(expected, actual):
        assert a.passes == e.passes and a.masks_used == e.masks_used
        tolerance = 0.0 if provider == "cpu" else 1e-4  # same kernels and session on the CPU
        for name, block in e.block_maps.items():
            np.testing.assert_allclose(a.block_maps[name], block, rtol=tolerance, atol=tolerance * block.max())
        np.testing.assert_allclose(a.saliency, e.saliency, atol=max(tolerance, 1e-7) * 100)


def test_io_binding_is_the_default_on_cuda_only(lite0_path: Path) -> None:
    assert not onnx_sise.Explainer(lite0_path).io_binding


def test_cuda_graphs_need_cuda_and_a_scoring_model(lite0_path: Path) -> None:
    with pytest.raises(ModelError, match="CUDA graphs need provider='cuda'"):
        onnx_sise.Explainer(lite0_path, cuda_graph=True)


@pytest.mark.needs_cuda
def test_cuda_graph_replays_give_the_host_maps(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    from onnx_sise_export import write_scoring_variant

    scoring = write_scoring_variant(lite0_path, tmp_path / "scoring.onnx", "fp32")
    host = onnx_sise.Explainer(lite0_path, threads=2)
    graphed = onnx_sise.Explainer(lite0_path, provider="cuda", scoring_model=scoring, cuda_graph=True)
    assert graphed.fixed_batch and graphed.io_binding
    for _ in range(2):  # capture, then replay
        actual = graphed.explain(photos / "coffee.png", target=967)
    expected = host.explain(photos / "coffee.png", target=967)
    assert actual.masks_used == expected.masks_used
    np.testing.assert_allclose(actual.saliency, expected.saliency, atol=1e-3)
