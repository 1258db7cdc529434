"""SISE through onnxruntime IO binding (bound_scoring.py) against the host path, whose
maps the eager-PyTorch reference checks (test_sise_reference.py). On the CPU this runs
the whole device pipeline, buffers and binding included, up to the provider; with a GPU
and onnxruntime-gpu the same test runs it on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnx_sise
from onnx_sise import core

PROVIDERS = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@pytest.fixture(autouse=True)
def _skip_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_cuda") and (
            core.cuda_device_count() == 0 or "CUDAExecutionProvider" not in ort.get_available_providers()):
        pytest.skip("no CUDA device with onnxruntime-gpu (run on a GPU machine)")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("method", ["sise", "ada-sise"])
def test_bound_scoring_gives_the_host_maps(lite0_path: Path, photos: Path, provider: str, method: str) -> None:
    host = onnx_sise.Explainer(lite0_path, threads=2, io_binding=False)
    bound = onnx_sise.Explainer(lite0_path, provider=provider, threads=2, io_binding=True)
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
