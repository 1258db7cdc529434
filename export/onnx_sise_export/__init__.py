"""The zoo and int8/fp16 variants: builds torch classifiers and exports them as
explainable ONNX (torch.onnx.export of the forward graph, then the ONNX-native
preparation of onnx_sise.model.preparation). Needs torch; the explain path (package
onnx_sise) never imports this package."""

from onnx_sise.model.info import ModelInfo

from .pipeline import ALPHA_TOLERANCE, GRADIENT_L2_TOLERANCE, SCORE_TOLERANCE, export_explainable
from .taps import TapSite, find_taps
from .variants import DEFAULT_FLOAT_LAYERS, PRECISIONS, calibration_batches, layer_sensitivity, write_scoring_variant
from .zoo import ZOO, build_zoo_model, imagenet_labels

__all__ = [
    "ALPHA_TOLERANCE", "GRADIENT_L2_TOLERANCE", "SCORE_TOLERANCE", "ZOO", "TapSite", "build_zoo_model", "calibration_batches",
    "DEFAULT_FLOAT_LAYERS", "export_explainable",
    "export_zoo", "find_taps", "imagenet_labels", "layer_sensitivity", "PRECISIONS", "write_scoring_variant",
]


def export_zoo(name: str, path: str, tap_modules: tuple[str, ...] = (), output_kind: str = "logits",
               check: str = "none") -> ModelInfo:
    """Export a model of the zoo (efficientnet-lite0, resnet50, vgg16) to `path`."""
    model, entry = build_zoo_model(name)
    return export_explainable(model, path, model_name=name, input_spec=entry.input, output_kind=output_kind,
                              labels=imagenet_labels(), tap_modules=tap_modules, check=check)
