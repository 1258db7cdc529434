"""Export a torch classifier to an explainable ONNX and verify it against torch autograd.

torch.onnx.export writes the forward graph alone, with the taps (found by the module
rule of taps.py) as extra outputs that name them; the same ONNX-native preparation as
any plain file (onnx_sise.model.preparation) then builds the gradient graphs, and the written
file is compared with eager torch autograd (float32, and float64 where float32 is the
limit)."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from onnx_sise.errors import ExportError
from onnx_sise.files.writing import write_atomically
from onnx_sise.model.info import METADATA_KEY, OUTPUT_KINDS, InputSpec, ModelInfo
from onnx_sise.model.preparation.build import MASK_BATCH, MASK_SIZE, explainable_model
from onnx_sise.model.preparation.plain_model import InputOverrides
from onnx_sise.model.preparation.subgraphs import set_metadata

from .autograd import explanation_function, mask_objective, score_head
from .taps import TapCapture, TapSite, find_taps, taps_from_names

log = logging.getLogger("onnx_sise.export")

# Export checks, onnxruntime against torch. Scores and activations: max |difference| /
# max |reference|. Gradient maps: ||difference||_2 / ||reference||_2; a few elements sit
# on a ReLU/ReLU6 kink where float rounding flips the local derivative, so the element-wise
# maximum is no measure there. alpha (SISE eq. 6, what SISE uses): max |difference| / max |reference|.
SCORE_TOLERANCE = 1e-4
GRADIENT_L2_TOLERANCE = 1e-2
ALPHA_TOLERANCE = 1e-3
# Deep ReLU nets flip more kinks than the two tolerances above allow, in torch's own float32
# autograd as much as in onnxruntime (VGG16: alpha 3.2e-3 from float64 in torch float32, 1.8e-3
# between the two). When onnxruntime misses them, both are compared with torch autograd in
# float64, and each tap passes if onnxruntime's error there is within FLOAT32_SLACK times torch
# float32's own (or within the tolerances above).
FLOAT32_SLACK = 2.0


class _WithTaps(nn.Module):
    """The classifier returning (logits, *taps): the taps become named graph outputs."""

    def __init__(self, model: nn.Module, sites: Sequence[TapSite]) -> None:
        super().__init__()
        self.model = model
        self.capture = TapCapture(model, sites)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with self.capture.capture() as taps:
            logits = self.model(images)
        return (logits, *taps)


def _forward_onnx(model: nn.Module, sites: Sequence[TapSite], image: torch.Tensor) -> tuple[onnx.ModelProto, list[str]]:
    """The forward graph (any batch) and the names of its tap tensors."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        program = torch.onnx.export(_WithTaps(model, sites), (image.repeat(2, 1, 1, 1),), dynamo=True,
                                    dynamic_shapes={"images": {0: batch}}, verbose=False, external_data=False)
    proto = program.model_proto
    tap_names = [o.name for o in proto.graph.output[1:]]
    del proto.graph.output[1:]
    return proto, tap_names


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.abs(expected).max())
    return float(np.abs(actual - expected).max() / scale) if scale > 0 else float(np.abs(actual).max())


def _relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.linalg.norm(expected))
    return float(np.linalg.norm(actual - expected) / scale) if scale > 0 else float(np.linalg.norm(actual))


def _example_image(spec: InputSpec) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, spec.height, spec.width, spec.channels, generator=generator) * 255.0
    mean = torch.tensor(spec.mean)
    std = torch.tensor(spec.std)
    x = (pixels * spec.scale - mean) / std
    return x.permute(0, 3, 1, 2).contiguous() if spec.layout == "NCHW" else x


def export_explainable(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    input_spec: InputSpec,
    output_kind: str = "logits",
    labels: Sequence[str] = (),
    tap_modules: Sequence[str] = (),
    tap_sites: Sequence[TapSite] | None = None,
    check: str = "none",
) -> ModelInfo:
    """Write `model` as an explainable ONNX at `path` and return its metadata.

    Taps are found by the block rule of `taps.find_taps`, or are the outputs of the
    modules named in `tap_modules`. The written file is compared with torch autograd with
    the tolerances above (and, with `check` one of onnx_sise.model.preparation.CHECKS, also
    passes the ONNX-native check against central differences); the measured errors go
    into the metadata."""
    if output_kind not in OUTPUT_KINDS:
        raise ExportError(f"output kind {output_kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    model = model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    image = _example_image(input_spec)
    with torch.no_grad():
        logits = model(image)
    if logits.dim() != 2:
        raise ExportError(f"the model's output has shape {tuple(logits.shape)}: expected class scores (batch, classes)")
    if tap_modules:
        sites = taps_from_names(model, tap_modules)
    else:
        sites = list(tap_sites) if tap_sites is not None else find_taps(model, image)
    proto, tap_names = _forward_onnx(model, sites, image)
    spec = input_spec
    overrides = InputOverrides(layout=spec.layout, size=(spec.height, spec.width), color=spec.color, scale=spec.scale,
                               mean=spec.mean, std=spec.std, output_kind=output_kind)
    joined, info = explainable_model(proto, model_name=model_name, overrides=overrides, taps=tap_names,
                                     labels=labels, check=check)
    info = replace(info, taps=tuple(replace(t, source=site.describe()) for t, site in zip(info.taps, sites)))
    report = {**info.verification, **_verify(joined, model, sites, info, image)}
    if any(i.name == info.graph.masks for i in joined.graph.input):
        report.update(_verify_mask_gradient(joined, model, info, image))
    info = replace(info, verification=report)
    set_metadata(joined, METADATA_KEY, info.to_json())
    write_atomically(Path(path), joined.SerializeToString())  # only once torch agrees
    return info


def _example_inputs(image: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Inputs of the mask objective for the check: a blurred-looking baseline, masks with
    values across [0, 1], small noise, the first class."""
    generator = torch.Generator().manual_seed(1)
    baseline = image.mean() + 0.1 * image
    masks = torch.rand(MASK_BATCH, 1, MASK_SIZE, MASK_SIZE, generator=generator)
    noise = 0.05 * torch.randn((MASK_BATCH, *image.shape[1:]), generator=generator)
    weights = torch.zeros(1, num_classes)
    weights[0, 0] = 1.0
    return image, baseline, masks, noise, weights


def _verify_mask_gradient(joined: onnx.ModelProto, model: nn.Module, info: ModelInfo,
                          image: torch.Tensor) -> dict[str, float]:
    """Mask scores and d score / d mask in onnxruntime against eager torch autograd."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(joined.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image, baseline, masks, noise, weights = _example_inputs(image, info.num_classes)
    with torch.no_grad():
        top = int(model(image).argmax())
    weights = torch.zeros_like(weights)
    weights[0, top] = 1.0
    scores, gradient = mask_objective(model, info.input, info.output_kind, MASK_SIZE)(
        image, baseline, masks.clone().requires_grad_(True), noise, weights)
    g = info.graph
    actual = session.run([g.mask_scores, g.mask_gradients], {
        g.mask_switch: np.array(True), g.mask_image: image.numpy(), g.mask_baseline: baseline.numpy(), g.masks: masks.numpy(),
        g.mask_noise: noise.numpy(), g.mask_target_weights: weights.numpy()})
    report = {"mask_scores": _relative_error(actual[0], scores.detach().numpy()),
              "mask_gradients": _relative_l2(actual[1], gradient.numpy())}
    if report["mask_gradients"] > GRADIENT_L2_TOLERANCE:
        _, wide = mask_objective(copy.deepcopy(model).double(), info.input, info.output_kind, MASK_SIZE)(
            image.double(), baseline.double(), masks.double().requires_grad_(True), noise.double(), weights.double())
        report["mask_float64_within_float32"] = _limited_by_float32(
            actual[1], gradient.numpy(), wide.numpy(), _relative_l2, GRADIENT_L2_TOLERANCE)
    if report["mask_scores"] > SCORE_TOLERANCE or report.get("mask_float64_within_float32", 0.0) > 1.0:
        raise ExportError(f"onnxruntime mask gradients differ from torch autograd by {report}: "
                          "the export is not faithful")
    return report


def _against_float64(model: nn.Module, sites: Sequence[TapSite], output_kind: str, image: torch.Tensor,
                     weights: tuple[torch.Tensor, torch.Tensor], actual: Sequence[np.ndarray],
                     expected: Sequence[np.ndarray]) -> dict[str, float]:
    """onnxruntime's and torch float32's tap gradients against torch autograd in float64.
    `float64_within_float32` is the worst, over taps and over the L2 and alpha measures, of
    onnxruntime's error / max(FLOAT32_SLACK x torch float32's error, the fixed tolerance):
    at most 1 when the export is as exact as float32 itself."""
    wide = copy.deepcopy(model).double()
    outputs = explanation_function(wide, sites, output_kind)(image.double().requires_grad_(True),
                                                             *(w.double() for w in weights))
    reference = [t.detach().numpy() for t in outputs[2 + len(sites):]]
    ratios, report = [], {"float64_gradients": 0.0, "float64_alpha": 0.0, "torch_float32_alpha": 0.0}
    for a, e32, e64 in zip(actual, expected, reference):
        alpha, alpha32, alpha64 = (t.sum((2, 3)) for t in (a, e32, e64))
        ratios += [_limited_by_float32(a, e32, e64, _relative_l2, GRADIENT_L2_TOLERANCE),
                   _limited_by_float32(alpha, alpha32, alpha64, _relative_error, ALPHA_TOLERANCE)]
        report["float64_gradients"] = max(report["float64_gradients"], _relative_l2(a, e64))
        report["float64_alpha"] = max(report["float64_alpha"], _relative_error(alpha, alpha64))
        report["torch_float32_alpha"] = max(report["torch_float32_alpha"], _relative_error(alpha32, alpha64))
    return {**report, "float64_within_float32": max(ratios)}


def _limited_by_float32(ours: np.ndarray, float32: np.ndarray, float64: np.ndarray,
                        measure: Callable[[np.ndarray, np.ndarray], float], tolerance: float) -> float:
    """Our error from torch float64 / max(FLOAT32_SLACK x torch float32's error from it,
    the fixed tolerance): at most 1 when we are as exact as float32 itself."""
    return measure(ours, float64) / max(FLOAT32_SLACK * measure(float32, float64), tolerance)


def _verify(joined: onnx.ModelProto, model: nn.Module, sites: Sequence[TapSite], info: ModelInfo,
            image: torch.Tensor) -> dict[str, float]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(joined.SerializeToString(), options, providers=["CPUExecutionProvider"])
    g = info.graph
    with torch.no_grad():
        probe = model(image)
    top = int(probe.argmax())
    weights = torch.zeros(1, info.num_classes)
    weights[0, top] = 1.0
    # Psi and the raw output weighted at once: both paths of the objective are checked.
    logit_weights = weights * 0.01
    expected = explanation_function(model, sites, info.output_kind)(image.clone().requires_grad_(True), weights,
                                                                     logit_weights)
    expected = [t.detach().numpy() for t in expected]
    names = [g.logits, g.scores] + [t.activation_output for t in info.taps] + [t.gradient_output for t in info.taps]
    actual = session.run(names, {g.gradient_switch: np.array(True), g.image: image.numpy(),
                                 g.target_weights: weights.numpy(), g.logit_weights: logit_weights.numpy()})
    batch = torch.cat([image, image.flip(-1), torch.zeros_like(image)])
    with torch.no_grad():
        batch_expected = score_head(model(batch), info.output_kind).numpy()
    (batch_actual,) = session.run([g.batch_scores], {g.masked_batch: batch.numpy()})
    n = len(info.taps)
    report = {
        "scores": _relative_error(actual[1], expected[1]),
        "batch_scores": _relative_error(batch_actual, batch_expected),
        "activations": max(_relative_error(a, e) for a, e in zip(actual[2:2 + n], expected[2:2 + n])),
        "gradients": max(_relative_l2(a, e) for a, e in zip(actual[2 + n:], expected[2 + n:])),
        "alpha": max(_relative_error(a.sum((2, 3)), e.sum((2, 3))) for a, e in zip(actual[2 + n:], expected[2 + n:])),
    }
    if max(report["scores"], report["batch_scores"]) > SCORE_TOLERANCE:
        raise ExportError(f"onnxruntime scores differ from torch by {report}: the export is not faithful")
    if report["gradients"] > GRADIENT_L2_TOLERANCE or report["alpha"] > ALPHA_TOLERANCE:
        report.update(_against_float64(model, sites, info.output_kind, image, (weights, logit_weights),
                                       actual[2 + n:], expected[2 + n:]))
    if report["activations"] > SCORE_TOLERANCE or report.get("float64_within_float32", 1.0) > 1.0:
        raise ExportError(f"onnxruntime gradients differ from torch autograd by {report}: the export is not faithful")
    log.info("verified against torch: %s", report)
    return report
