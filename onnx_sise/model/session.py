"""The explainable ONNX in onnxruntime: one session serves the gradient call (batch 1)
and the batched masked forward passes (only `batch_scores` is computed for those), unless
the provider is OpenVINO (model/openvino.py), which runs the masked passes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError, OptionError, PlainModelError
from .info import METADATA_KEY, ModelInfo, Tap, parse_object
from .openvino import DEFAULT_PRECISION, DEVICES, OpenVinoModel, checked_precision
from .runtime import QUIET_LOG_SEVERITY, RUNTIME_ERRORS, first_line, model_bytes, open_session
from .shapes import check_scoring_shapes, check_shapes, expect_shape, image_dims, mask_geometry

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# What runs the nodes a provider does not take (onnxruntime falls back to its CPU provider last).
FALLBACKS = {"tensorrt": ("CUDAExecutionProvider",)}
# The device each provider's tensors live on: IO binding and CUDA graphs ask for "cuda".
DEVICE_OF = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}
# Every `provider` an ExplainableModel takes: onnxruntime's, then OpenVINO's devices for
# the masked passes (with onnxruntime's CPU provider for the rest).
PROVIDER_CHOICES = (*PROVIDERS, *DEVICES)
VARIANT_KEY = "onnx_sise_scoring_variant"


@dataclass(frozen=True)
class BlockFeatures:
    """Activations A (N, h, w) and gradients dPsi/dA (N, h, w) of one block, batch axis dropped."""

    activations: np.ndarray
    gradients: np.ndarray


@dataclass(frozen=True)
class GradientCall:
    """What one gradient call returns: the raw class outputs y and the scores Psi
    (classes,) of the image, and per row of class weights, per tap, the tap's features
    (None for the taps shallower than the call's `from_tap`, whose gradients it skipped)."""

    logits: np.ndarray
    scores: np.ndarray
    features: list[list[BlockFeatures | None]]


def custom_metadata(session: ort.InferenceSession, source: str) -> dict[str, str]:
    """The model's metadata_props, refused in one line unless they are UTF-8 text."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:
        raise ModelError(f"{source} has metadata that is not UTF-8 text: export the model again") from None


def run(session: ort.InferenceSession, names: list[str], feeds: dict[str, np.ndarray], source: str) -> list:
    """session.run, an onnxruntime failure (a graph edited into one that cannot run) as one ModelError line."""
    try:
        return session.run(names, feeds)
    except RUNTIME_ERRORS as exc:
        raise ModelError(f"{source} failed in onnxruntime ({first_line(exc)}): export the model again") from None


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = QUIET_LOG_SEVERITY
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return options


class ExplainableModel:
    """An explainable ONNX loaded in onnxruntime, with its metadata validated.

    `path` is the model file or its bytes. `options` and `providers` (as
    onnxruntime takes them, names or (name, options) pairs) replace the ones made from
    `provider` and `threads`. One session serves every thread: onnxruntime's run() is
    thread-safe, and nothing here changes after construction. `scoring_model` is a copy
    of the scoring sub-graph (fp32, fp16, int8) that runs the masked passes instead.
    Provider "openvino" ("openvino-gpu") runs the masked passes on OpenVINO's CPU (GPU)
    in `precision` ("auto", "f32", "bf16": model/openvino.py) and the rest on
    onnxruntime's CPU; other providers take precision "f32" or "auto" (float32 both)."""

    def __init__(self, path: str | os.PathLike[str] | bytes, provider: str = "cpu", threads: int | None = None, *,
                 options: ort.SessionOptions | None = None,
                 providers: Sequence[str | tuple[str, dict]] | None = None,
                 scoring_model: str | os.PathLike[str] | None = None, cuda_graph: bool = False,
                 precision: str = DEFAULT_PRECISION) -> None:
        in_memory = isinstance(path, (bytes, bytearray, memoryview))
        self.path = None if in_memory else Path(path)
        self.source = "the model bytes" if in_memory else str(self.path)
        precision = checked_precision(precision)
        openvino = provider in DEVICES and providers is None
        if openvino and (scoring_model is not None or cuda_graph):
            raise OptionError(f"provider {provider} compiles the model's own scoring graph: it takes no scoring model "
                             "or CUDA graph")
        if not openvino and precision == "bf16":
            raise OptionError(f"precision {precision} is an OpenVINO precision: give provider openvino too")
        if openvino:
            data, external = model_bytes(bytes(path) if in_memory else self.path, self.source)
            if external:
                raise ModelError(f"{self.source} is larger than 2 GiB: provider {provider} cannot load it, use cpu")
            path, in_memory, openvino_provider, provider = data, True, provider, "cpu"
        if providers is None:
            if provider not in PROVIDERS:
                raise ModelError(f"provider {provider!r} is not one of {', '.join(PROVIDER_CHOICES)}")
            wanted = [PROVIDERS[provider], *FALLBACKS.get(provider, ())]
            if missing := [name for name in wanted if name not in ort.get_available_providers()]:
                raise ModelError(f"onnxruntime here has no {', '.join(missing)}: install onnx_sise[gpu] (onnxruntime-gpu) "
                                 "for CUDA, and NVIDIA's TensorRT libraries for TensorRT")
            providers = wanted
            provider = DEVICE_OF[provider]
        else:
            first = providers[0] if providers else "CPUExecutionProvider"
            provider = "cuda" if (first if isinstance(first, str) else first[0]) == PROVIDERS["cuda"] else "cpu"
        self.options = options or session_options(threads)
        self.providers = list(providers)
        # the model's bytes when given so, or read for OpenVINO (model/head.py reads them)
        self.data = bytes(path) if in_memory else None
        self.session = open_session(self.data if in_memory else self.path, self.source, self.options, self.providers)
        self.provider = provider
        metadata = custom_metadata(self.session, self.source)
        if METADATA_KEY not in metadata:
            raise PlainModelError(
                f"{self.source} is a plain ONNX model, not an explainable one: "
                f"export it first with `python -m onnx_sise export` (see README)"
            )
        self.info = ModelInfo.from_json(metadata[METADATA_KEY])
        self._check_outputs()
        check_shapes(self.session, self.info, self.source)
        self.scores(np.zeros(image_dims(self.info.input, None)[1:], np.float32))  # a graph that cannot run fails here
        switch = self.info.graph.gradient_switch
        feeds = self._feeds()
        self._gradient_switch = {switch: np.array(True)} if switch in feeds else {}
        # Files since the staged gradient graph (preparation/staging.py) take from_tap, by_rank
        # and rows of class weights; older ones run every tap's gradient for one row.
        staged = self.info.staged_gradient
        self.staged = staged is not None and staged.from_tap in feeds and staged.by_rank in feeds
        # The gradient call feeds the scoring graph an empty batch (it runs on every call,
        # asked or not); None until a call shows whether the graph takes one.
        self._empty_batch: bool | None = None
        self.scoring_session = self.session
        self.scoring_precision = "fp32"
        self.cuda_graph = False
        if cuda_graph and (provider != "cuda" or scoring_model is None):
            raise ModelError("CUDA graphs need provider='cuda' and a scoring model of the scoring sub-graph alone "
                             "(onnx_sise_export.write_scoring_variant, precision fp32 or fp16)")
        if scoring_model is not None:
            self._load_scoring_variant(Path(scoring_model), threads, cuda_graph)
        self.openvino: OpenVinoModel | None = None
        if openvino:
            import onnx

            self.openvino = OpenVinoModel(onnx.load_model_from_string(self.data), self.info, self.source,
                                          openvino_provider, precision, threads)
            self.provider, self.scoring_precision = openvino_provider, self.openvino.precision

    def _load_scoring_variant(self, path: Path, threads: int | None, cuda_graph: bool) -> None:
        """A copy of the scoring sub-graph (onnx_sise_export.variants: fp32 for CUDA
        graphs, fp16, int8) runs the masked passes; the gradient call stays in this session."""
        providers = self.providers
        if cuda_graph:
            providers = [(PROVIDERS["cuda"], {"enable_cuda_graph": "1"})]
        name = f"scoring model {path}"
        session = open_session(path, name, self.options, providers)
        raw = custom_metadata(session, name).get(VARIANT_KEY)
        if raw is None:
            raise ModelError(f"{path} is not a scoring variant: write one with onnx_sise_export.write_scoring_variant")
        variant = parse_object(raw, "scoring variant metadata")
        names = self.info.graph
        found = (variant.get("masked_batch"), variant.get("batch_scores"), variant.get("num_classes"))
        if found != (names.masked_batch, names.batch_scores, self.info.num_classes) or isinstance(found[2], bool):
            raise ModelError(f"{path} is a scoring variant of another model: write it again from {self.source}")
        check_scoring_shapes(session, self.info, name)
        self.scoring_session = session
        self.scoring_precision = str(variant.get("precision", "?"))[:16]
        self.cuda_graph = cuda_graph

    def _check_outputs(self) -> None:
        present = {o.name for o in self.session.get_outputs()}
        names = self.info.graph
        wanted = [names.logits, names.scores, names.batch_scores]
        wanted += [t.activation_output for t in self.info.taps] + [t.gradient_output for t in self.info.taps]
        missing = [name for name in wanted if name not in present]
        feeds = self._feeds()
        missing += [name for name in (names.image, names.target_weights, names.logit_weights, names.masked_batch)
                    if name not in feeds]
        if missing:
            raise ModelError(f"{self.source} lacks the tensors {', '.join(missing[:3])}: export the model again "
                             "with this version of onnx_sise")

    def _feeds(self) -> set[str]:
        return {i.name for i in self.session.get_inputs()} | {i.name for i in self.session.get_overridable_initializers()}

    def scores(self, image: np.ndarray) -> np.ndarray:
        """Psi for every class, (classes,), of one preprocessed image without batch axis."""
        names = self.info.graph
        (scores,) = run(self.session, [names.batch_scores], {names.masked_batch: image[None]}, self.source)
        expect_shape(scores, (1, self.info.num_classes), names.batch_scores, self.source)
        return scores[0]

    def block_features(self, image: np.ndarray, target_weights: np.ndarray,
                       logit_weights: np.ndarray | None = None) -> list[BlockFeatures]:
        """One gradient call: per tap, A and d(sum_c w_c Psi_c + sum_c u_c y_c)/dA, with
        target_weights w over the scores Psi and logit_weights u over the raw outputs y."""
        call = self.gradients(image, target_weights[None], None if logit_weights is None else logit_weights[None])
        return [f for f in call.features[0] if f is not None]

    def gradients(self, image: np.ndarray, target_weights: np.ndarray, logit_weights: np.ndarray | None = None, *,
                  from_tap: int = 0, by_rank: bool = False) -> GradientCall:
        """One gradient call for R rows of class weights over one forward pass.

        target_weights w and logit_weights u: (R, classes) (a 1-row one broadcast); row r
        gives per tap A and d(sum_c w_rc Psi_c + sum_c u_rc y_c)/dA. from_tap: the
        shallowest tap differentiated to (the backward stops there: a call for the
        deepest tap costs about a forward pass). by_rank: the weights' columns are ranks
        (column j weighs the class of the j-th highest score, ties to the lower id).
        Files made before these existed run every tap's gradient, one call per row."""
        taps = self.info.taps
        if not 0 <= from_tap <= len(taps):
            raise ValueError(f"from_tap must be in [0, {len(taps)}], got {from_tap}")
        target_weights = np.asarray(target_weights, np.float32)
        logit_weights = None if logit_weights is None else np.asarray(logit_weights, np.float32)
        if not self.staged:
            return self._gradients_one_row_at_a_time(image, target_weights, logit_weights, from_tap, by_rank)
        names = self.info.graph
        wanted = taps[from_tap:]
        staged = self.info.staged_gradient
        assert staged is not None
        feeds = {names.image: image[None], names.target_weights: target_weights, **self._gradient_switch,
                 staged.from_tap: np.array(from_tap, np.int64), staged.by_rank: np.array(by_rank)}
        if logit_weights is not None:
            feeds[names.logit_weights] = logit_weights
        rows = max(target_weights.shape[0], 1 if logit_weights is None else logit_weights.shape[0])
        logits, scores, activations, gradients = self._checked_gradient_run(feeds, wanted, rows)
        skipped: list[BlockFeatures | None] = [None] * from_tap
        features = [skipped + [BlockFeatures(a[0], g[r]) for a, g in zip(activations, gradients)] for r in range(rows)]
        return GradientCall(logits, scores, features)

    def _gradients_one_row_at_a_time(self, image: np.ndarray, target_weights: np.ndarray,
                                     logit_weights: np.ndarray | None, from_tap: int, by_rank: bool) -> GradientCall:
        """`gradients` on a file made before the staged gradient graph: every tap, one call per row."""
        taps = self.info.taps
        names = self.info.graph
        rows = max(target_weights.shape[0], 1 if logit_weights is None else logit_weights.shape[0])
        features = []
        order = None
        for r in range(rows):
            w = target_weights[r % target_weights.shape[0]]
            u = None if logit_weights is None else logit_weights[r % logit_weights.shape[0]]
            if by_rank:
                if order is None:
                    order = np.argsort(-self.scores(image), kind="stable")
                w = _by_class(w, order)
                u = None if u is None else _by_class(u, order)
            feeds = {names.image: image[None], names.target_weights: w[None], **self._gradient_switch}
            if u is not None:
                feeds[names.logit_weights] = u[None]
            logits, scores, activations, gradients = self._checked_gradient_run(feeds, taps, 1)
            skipped: list[BlockFeatures | None] = [None] * from_tap
            features.append(skipped + [BlockFeatures(a[0], g[0])
                                       for a, g in zip(activations[from_tap:], gradients[from_tap:])])
        return GradientCall(logits, scores, features)

    def _checked_gradient_run(self, feeds: dict[str, np.ndarray], taps: Sequence[Tap],
                              rows: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """A gradient run for `taps`, its shapes checked: logits and scores (classes,), per tap
        A (1, C, H, W) and dA (rows, C, H, W)."""
        names = self.info.graph
        outputs = self._gradient_run([names.logits, names.scores, *(t.activation_output for t in taps),
                                      *(t.gradient_output for t in taps)], feeds)
        logits, scores, activations, gradients = outputs[0], outputs[1], outputs[2:2 + len(taps)], outputs[2 + len(taps):]
        expect_shape(logits, (1, self.info.num_classes), names.logits, self.source)
        expect_shape(scores, (1, self.info.num_classes), names.scores, self.source)
        for tap, a, g in zip(taps, activations, gradients, strict=True):
            expect_shape(a, (1, tap.channels, tap.height, tap.width), tap.activation_output, self.source)
            expect_shape(g, (rows, tap.channels, tap.height, tap.width), tap.gradient_output, self.source)
        return logits[0], scores[0], activations, gradients

    def _gradient_run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list:
        """A run of the gradient sub-graph: in OpenVINO f32 where it compiled one (files made
        before the staged graph), else in onnxruntime with the scoring graph fed an empty batch where it
        takes one (onnxruntime runs it on every call: on the default batch it would cost a
        forward pass)."""
        names = self.info.graph
        if self.openvino is not None and self.openvino.gradient is not None:  # files before the staged graph
            zeros = np.zeros((1, self.info.num_classes), np.float32)
            taken = {name: feeds.get(name, zeros).astype(np.float32, copy=False)
                     for name in (names.image, names.target_weights, names.logit_weights)}
            return self.openvino.gradient(taken, outputs)
        empty = {names.masked_batch: np.zeros((0, *image_dims(self.info.input, None)[1:]), np.float32)}
        if self._empty_batch is None:
            try:
                found = self.session.run(outputs, {**feeds, **empty})
            except RUNTIME_ERRORS:
                self._empty_batch = False
            else:
                self._empty_batch = True
                return found
        return run(self.session, outputs, {**feeds, **empty} if self._empty_batch else feeds, self.source)

    def logits_and_activations(self, image: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The raw class outputs y (classes,) and every tap's activations (N, h, w) of one
        preprocessed image, from the gradient sub-graph (no gradient where the file can skip them)."""
        names = self.info.graph
        zeros = np.zeros((1, self.info.num_classes), np.float32)
        feeds = {names.image: image[None], names.target_weights: zeros, names.logit_weights: zeros,
                 **self._gradient_switch}
        if self.staged and self.info.staged_gradient is not None:
            feeds[self.info.staged_gradient.from_tap] = np.array(len(self.info.taps), np.int64)
        outputs = self._gradient_run([names.logits, *(t.activation_output for t in self.info.taps)], feeds)
        expect_shape(outputs[0], (1, self.info.num_classes), names.logits, self.source)
        for tap, activations in zip(self.info.taps, outputs[1:]):
            expect_shape(activations, (1, tap.channels, tap.height, tap.width), tap.activation_output, self.source)
        return outputs[0][0], [a[0] for a in outputs[1:]]

    def batch_scores(self, batch: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """Psi of `classes` for each masked input of `batch`, (B, len(classes))."""
        names = self.info.graph
        if self.openvino is not None:
            scores = self.openvino.batch_scores(batch)
        else:
            (scores,) = run(self.scoring_session, [names.batch_scores], {names.masked_batch: batch}, self.source)
        expect_shape(scores, (batch.shape[0], self.info.num_classes), names.batch_scores, self.source)
        return scores[:, list(classes)]


def _by_class(weights: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Weights over ranks (column j: the class order[j]) as weights over classes."""
    by_class = np.zeros_like(weights)
    by_class[order] = weights
    return by_class


class MaskGradient:
    """The mask-gradient sub-graph of SIGCAM (AOP eq. 6) in the model's session: a fixed
    batch of masks (batch, mask_size, mask_size) per call."""

    def __init__(self, model: ExplainableModel) -> None:
        names = model.info.graph
        shapes = {i.name: i.shape for i in [*model.session.get_inputs(), *model.session.get_overridable_initializers()]}
        present = {o.name for o in model.session.get_outputs()}
        if names.masks not in shapes or names.mask_gradients not in present:
            raise ModelError(f"{model.source} has no mask-gradient sub-graph (SIGCAM needs it): export the model again "
                             "with this version of onnx_sise")
        self.model = model
        self.batch, self.mask_size = mask_geometry(model.session, model.info, model.source)

    def __call__(self, image: np.ndarray, baseline: np.ndarray, masks: np.ndarray, noise: np.ndarray | None,
                 target_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores sum_c w_c Psi_c(I . up(M_b) + baseline . (1 - up(M_b)) + noise_b) (B,) and
        their gradients with respect to the masks (B, m, m), for masks (B <= batch, m, m);
        image and baseline without batch axis, noise (B, ...) or None."""
        names = self.model.info.graph
        count = masks.shape[0]
        padded = np.zeros((self.batch, 1, self.mask_size, self.mask_size), np.float32)
        padded[:count, 0] = masks
        feeds = {names.mask_switch: np.array(True), names.mask_image: image[None], names.mask_baseline: baseline[None],
                 names.masks: padded, names.mask_target_weights: target_weights[None].astype(np.float32)}
        if noise is not None:
            full = np.zeros((self.batch, *image.shape), np.float32)
            full[:count] = noise
            feeds[names.mask_noise] = full
        scores, gradients = run(self.model.session, [names.mask_scores, names.mask_gradients], feeds, self.model.source)
        expect_shape(scores, (self.batch,), names.mask_scores, self.model.source)
        expect_shape(gradients, (self.batch, 1, self.mask_size, self.mask_size), names.mask_gradients,
                     self.model.source)
        return scores[:count], gradients[:count, 0]
