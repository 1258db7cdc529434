"""The SIGCAM mask-gradient sub-graph in onnxruntime against PyTorch autograd on the eager
model, written here from AOP eq. 6 with torch's own bilinear upsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import reference
import torch
import torch.nn.functional as F

from onnx_sise import Explainer, ModelError
from onnx_sise.images.blur import blurred
from onnx_sise.kernels import bilinear_matrix
from onnx_sise.methods.igos import perturbed
from onnx_sise.model.session import MaskGradient
from onnx_sise_export import GRADIENT_L2_TOLERANCE, SCORE_TOLERANCE


def test_bilinear_matrix_is_the_half_pixel_resize() -> None:
    maps = np.random.default_rng(0).random((2, 28, 28)).astype(np.float32)
    rows, cols = bilinear_matrix(224, 28), bilinear_matrix(301, 28)
    np.testing.assert_allclose(rows @ maps @ cols.T, reference.upsample_bilinear(maps, 224, 301), atol=1e-6)


def test_mask_gradients_match_autograd_on_a_real_photo(lite0_path: Path, lite0_torch: torch.nn.Module,
                                                       photos: Path) -> None:
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "coffee.png")
    baseline = blurred(x)
    rng = np.random.default_rng(2)
    masks = rng.random((7, 28, 28)).astype(np.float32)  # fewer rows than the exported batch: padded
    noise = (0.05 * rng.standard_normal((7, *x.shape))).astype(np.float32)
    weights = np.zeros(1000, np.float32)
    weights[967] = 1.0
    gradient = MaskGradient(explainer.model)
    assert (gradient.batch, gradient.mask_size) == (20, 28)
    scores, grads = gradient(x, baseline, masks, noise, weights)

    m = torch.from_numpy(masks[:, None]).requires_grad_(True)
    up = F.interpolate(m, size=(224, 224), mode="bilinear", align_corners=False)
    image, base = torch.from_numpy(x[None]), torch.from_numpy(baseline[None])
    psi = torch.softmax(lite0_torch(image * up + base * (1 - up) + torch.from_numpy(noise)), dim=1)[:, 967]
    psi.sum().backward()
    expected = m.grad[:, 0].numpy()
    assert np.abs(scores - psi.detach().numpy()).max() / psi.max().item() < SCORE_TOLERANCE
    assert np.linalg.norm(grads - expected) / np.linalg.norm(expected) < GRADIENT_L2_TOLERANCE
    assert np.abs(expected).max() > 1e-4  # the masks matter to the score: the comparison is not of zeros


def test_graph_scores_equal_the_scoring_subgraph_on_the_same_perturbation(lite0_path: Path, photos: Path) -> None:
    """The line search scores candidates on the scoring sub-graph: it must see what the
    mask sub-graph sees (same upsampling, same Phi)."""
    explainer = Explainer(lite0_path)
    x, _ = explainer.preprocess(photos / "chelsea.png")
    baseline = blurred(x)
    masks = np.random.default_rng(3).random((3, 28, 28)).astype(np.float32)
    weights = np.zeros(1000, np.float32)
    weights[285] = 1.0
    scores, _ = MaskGradient(explainer.model)(x, baseline, masks, None, weights)
    direct = explainer.model.batch_scores(perturbed(x, baseline, masks, "NCHW"), [285])[:, 0]
    np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-6)


def test_export_records_the_mask_gradient_check(lite0_path: Path) -> None:
    verification = Explainer(lite0_path).info.verification
    assert verification["mask_scores"] < SCORE_TOLERANCE
    assert verification["mask_gradients"] < GRADIENT_L2_TOLERANCE


def test_model_exported_without_the_mask_graph_still_explains_but_refuses_sigcam(lite0_path: Path, photos: Path,
                                                                                 tmp_path: Path) -> None:
    model = onnx.load(str(lite0_path))
    graph = model.graph
    keep_nodes = [n for n in graph.node if n.name != "mask/switch"]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    for collection in (graph.input, graph.output, graph.initializer):
        kept = [v for v in collection if not v.name.startswith("mask/")]
        del collection[:]
        collection.extend(kept)
    older = tmp_path / "older.sise.onnx"
    onnx.save(model, str(older))
    explainer = Explainer(older)
    assert explainer.explain(photos / "coffee.png", method="gradcam").target == 967
    with pytest.raises(ModelError, match="export the model again"):
        explainer.explain(photos / "coffee.png", method="sigcam")
