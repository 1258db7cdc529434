"""AISE against OpenVINO XAI's own AISEClassification (1.1.0, its defaults: the BALANCE
preset, 50 evaluations per kernel width, widths 0.1, 0.175, 0.25, DIRECT's epsilon 0.1)
on EfficientNet-Lite0's scoring graph in OpenVINO (float32) and real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import reference
import skimage.io

from onnx_sise import Explainer, OptionError

PHOTOS = [("coffee.png", 967), ("chelsea.png", 285)]


@pytest.mark.slow
@pytest.mark.parametrize("photo,target", PHOTOS)
def test_aise_equals_openvino_xai(lite0_path: Path, openvino_lite0: tuple, photos: Path, photo: str,
                                  target: int) -> None:
    from openvino_xai.methods.black_box.aise.classification import AISEClassification

    model, _, compile_f32 = openvino_lite0
    explainer = Explainer(lite0_path)
    size = (explainer.info.input.width, explainer.info.input.height)
    image = cv2.resize(skimage.io.imread(photos / photo)[..., :3], size, interpolation=cv2.INTER_AREA)  # maps alike
    x, _ = explainer.preprocess(image)
    aise = AISEClassification(model, postprocess_fn=lambda outputs: outputs["batch_scores"], prepare_model=False)
    aise._model_compiled = compile_f32(model)
    theirs = aise.generate_saliency_map(x[None], target_indices=[target])[target]  # 0..255 at 224 x 224
    evaluations = sum(len(points) for points in aise.kernel_params_hist.values())
    result = explainer.explain(image, target=target, method="aise")
    assert result.passes == 2 * evaluations  # the same DIRECT runs: what each kernel keeps, and deletes
    ours = result.saliency
    assert ours.shape == theirs.shape
    assert reference.pearson(ours, theirs.astype(np.float32)) >= 0.99


@pytest.mark.parametrize("options", [{"aise_evaluations": 0}, {"aise_widths": 0}, {"aise_min_width": 0.3},
                                     {"aise_epsilon": -0.1}])
def test_options_outside_their_domain_are_refused(lite0_path: Path, photos: Path, options: dict) -> None:
    with pytest.raises(OptionError, match=next(iter(options))):
        Explainer(lite0_path).explain(photos / "coffee.png", method="aise", **options)
