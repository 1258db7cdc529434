"""`Explainer`: owns the onnxruntime session, the preprocessing and target choice, and
runs an explanation method (onnx_sise.methods) over them.

Concurrency: one Explainer may be used from any number of threads at once. It holds
only what does not change after construction (the onnxruntime session, whose run() is
thread-safe, and the model's metadata); every call makes its own Context: its own
masked-batch buffer, feature cache, pass counter and prefetch worker.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import onnxruntime as ort

from . import kernels
from .cancel import Cancellation, CancelToken
from .errors import ModelError, OptionError, PlainModelError, TargetError
from .files.reading import text_path
from .images.decode import MAX_PIXELS
from .images.model_input import model_input
from .images.sources import ImageSource
from .methods import METHODS, Context, checked
from .methods.context import SCORE, GradientNeed
from .methods.options import DEFAULT_RESIZE, PRECISION, RESIZE
from .methods.sise.io_binding import IoBindingPipeline
from .model.cache import Prepared, prepared_model
from .model.info import ModelInfo
from .model.openvino import DEFAULT_PRECISION
from .model.openvino import DEVICES as OPENVINO_DEVICES
from .model.runtime import copied_session_options, providers_of
from .model.session import ExplainableModel, GradientCall
from .progress import ProgressBar, no_progress

ImageLike = ImageSource
ModelSource = Union[str, os.PathLike, bytes]
DEFAULT_BATCH_SIZE = 32
# One masked batch: onnxruntime's activations grow with it, several times the input's size.
MAX_BATCH_SIZE = 1024
MAX_BATCH_BYTES = 1 << 30  # batch_size x the model's float32 input
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    """One explanation of one target.

    saliency: (H, W) float32 in [0, 1], the photo's own size.
    block_maps: per tap name, the map the method built there (see MethodResult).
    masks_used: per tap name, the masks this target was scored on.
    passes: masked forward passes the whole call ran (shared by all its targets).
    """

    saliency: np.ndarray
    target: int
    label: str
    score: float
    method: str
    block_maps: dict[str, np.ndarray]
    masks_selected: dict[str, int]
    masks_used: dict[str, int]
    seconds: float
    passes: int = 0
    details: dict[str, object] = field(default_factory=dict)

    @property
    def forward_passes(self) -> int:
        """Masked passes this target needs on its own (a mask that several feature maps
        give is scored once: details["duplicate_masks"])."""
        duplicates = self.details.get("duplicate_masks", {})
        return sum(self.masks_used.values()) - sum(duplicates.values())  # type: ignore[union-attr]

    def summary(self) -> dict[str, object]:
        """JSON-ready description (no arrays)."""
        return {
            "target": self.target, "label": self.label, "score": round(self.score, 6), "method": self.method,
            "masks_selected": self.masks_selected, "masks_used": self.masks_used,
            "forward_passes": self.forward_passes, "passes_run": self.passes, "seconds": round(self.seconds, 3),
            **self.details,
        }


class Explainer:
    """Explains an explainable ONNX's predictions.

    Args:
        model: the `*.sise.onnx` written by `python -m onnx_sise export`, its path or its
            bytes; or a plain ONNX classifier (see `prepare`).
        provider: "cpu"; "cuda" or "tensorrt" (TensorRT, CUDA for the nodes it does not
            take) with onnxruntime-gpu; or "openvino" ("openvino-gpu"): the masked passes
            run in OpenVINO on the CPU (an Intel GPU) in `precision`, the gradient call in
            onnxruntime (onnx_sise[openvino], model/openvino.py).
        threads: onnxruntime (and OpenVINO) intra-op threads, capped at the CPUs this
            process may use (default: the runtime's choice).
        precision: the masked passes' arithmetic with provider "openvino": "f32", "bf16"
            (CPUs with AVX512_BF16 or AMX; OptionError elsewhere) or "auto" (bf16 where
            the device has it, else f32); default f32 (RESULTS.md: bf16 moved one Ada-SISE
            map of 34 to r 0.914). Other providers take "f32" or "auto" (float32 both).
        batch_size: masked inputs per forward pass; it bounds the memory of the masked
            passes (batch_size x the model's input), whatever the number of masks.
        prepare: a plain ONNX classifier is prepared into an explainable one (onnx and
            onnxruntime only, onnx_sise.model.preparation) and cached in `cache_dir` (default
            $ONNX_SISE_CACHE or ~/.cache/onnx_sise); `self.prepared` says which file and
            whether it came from the cache. This cache is the only file an Explainer writes.
        prefetch: make the next batch of masks in a worker thread while onnxruntime
            runs the current one (benchmarks/RESULTS.md has its measured effect).
        session_options, providers: onnxruntime's own settings, used instead of
            `provider` and `threads` (see also `from_session_config`).
        max_pixels: larger photos are refused before decoding.
        io_binding: SISE's masks, masked batches and scores stay in buffers of the
            compiled core that onnxruntime reads and writes in place (IO binding); on
            the GPU nothing but the target scores crosses to the host. Default: on with
            the CUDA provider, off on the CPU (where it measures no faster, RESULTS.md).
        scoring_model: an fp32, fp16 or int8 copy of the masked-pass sub-graph
            (onnx_sise_export.write_scoring_variant) that runs the masked passes.
        cuda_graph: replay the masked pass as a CUDA graph (provider="cuda" and a
            scoring_model needed); implies IO binding and fixed_batch.
        fixed_batch: every IO-bound pass runs batch_size rows, the last chunk padded.
        resize: how a photo is resized to the model's input: "area" (cv2.INTER_AREA when
            it shrinks on both sides, else INTER_LINEAR) or "linear" (INTER_LINEAR always).
    """

    def __init__(self, model: ModelSource, provider: str = "cpu", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, *, prepare: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None, prefetch: bool = True,
                 session_options: ort.SessionOptions | None = None,
                 providers: Sequence[str | tuple[str, dict]] | None = None, max_pixels: int = MAX_PIXELS,
                 io_binding: bool | None = None, scoring_model: str | os.PathLike[str] | None = None,
                 cuda_graph: bool = False, fixed_batch: bool | None = None, resize: str = DEFAULT_RESIZE,
                 precision: str = DEFAULT_PRECISION) -> None:
        model = checked_source(model)
        cache_dir, scoring_model = (path_option(name, value) for name, value in (("cache_dir", cache_dir),
                                                                                 ("scoring_model", scoring_model)))
        if providers is not None:
            providers = checked_providers(providers)
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                or not 1 <= batch_size <= MAX_BATCH_SIZE):
            raise OptionError(f"batch_size must be an integer in [1, {MAX_BATCH_SIZE}], got {batch_size!r} "
                              "(32 is plenty)")
        threads = capped_threads(threads)
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 1:
            raise OptionError(f"max_pixels must be an integer >= 1, got {max_pixels!r}")
        for name, value, domain in (("resize", resize, RESIZE), ("precision", precision, PRECISION)):
            if (problem := domain.problem(name, value)) is not None:
                raise OptionError(problem)
        if io_binding and provider in OPENVINO_DEVICES:
            raise OptionError(f"provider {provider} runs the masked passes in OpenVINO: io_binding is onnxruntime's")
        self.prepared: Prepared | None = None
        settings = dict(provider=provider, threads=threads, options=session_options, providers=providers,
                        scoring_model=scoring_model, cuda_graph=cuda_graph, precision=precision)
        try:
            self.model = ExplainableModel(model, **settings)
        except PlainModelError:
            if not prepare:
                raise
            self.prepared = prepared_model(model, cache_dir)
            try:
                self.model = ExplainableModel(self.prepared.path, **settings)
            except ModelError:
                if not self.prepared.cached:
                    raise
                log.warning("the cached preparation %s did not load: preparing %s again", self.prepared.path,
                            self.prepared.path.name)
                self.prepared = prepared_model(model, cache_dir, refresh=True)
                self.model = ExplainableModel(self.prepared.path, **settings)
        self.batch_size = self._checked_batch_size(int(batch_size))
        self.prefetch = prefetch
        self.max_pixels = int(max_pixels)
        self.resize = resize
        self.io_binding = cuda_graph or (self.model.provider == "cuda" if io_binding is None else io_binding)
        self.fixed_batch = cuda_graph if fixed_batch is None else fixed_batch
        log.debug("loaded %s (%s, %d taps) on %s", self.model.source, self.info.model_name, len(self.info.taps),
                  ", ".join(self.model.session.get_providers()))

    def _checked_batch_size(self, batch_size: int) -> int:
        spec = self.info.input
        row_bytes = 4 * spec.channels * spec.height * spec.width
        if batch_size * row_bytes > MAX_BATCH_BYTES:
            raise OptionError(f"batch_size {batch_size} needs {batch_size * row_bytes / 2**30:.1f} GiB per masked batch "
                              f"of this model: at most {MAX_BATCH_BYTES // row_bytes} fit in "
                              f"{MAX_BATCH_BYTES / 2**30:g} GiB (32 is plenty)")
        return batch_size

    @classmethod
    def from_session_config(cls, session: ort.InferenceSession, model: ModelSource, **kwargs: object) -> Explainer:
        """An Explainer for `model` whose session runs on `session`'s execution providers
        (with their options) and with its threading, optimisation and memory settings,
        e.g. beside the classifier it explains. Profiling and optimized_model_filepath are
        not copied: they would write files."""
        return cls(model, session_options=copied_session_options(session), providers=providers_of(session),
                   **kwargs)  # type: ignore[arg-type]

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def preprocess(self, image: ImageLike) -> tuple[np.ndarray, tuple[int, int]]:
        """(model input without batch axis, (height, width) of the map to return)."""
        prepared = model_input(image, self.info.input, self.max_pixels, self.resize)
        return prepared.x, prepared.photo_size

    def explain(self, image: ImageLike, target: int | None = None, method: str = "sise", *,
                progress: bool = False, max_seconds: float | None = None, cancel: CancelToken | None = None,
                **options: object) -> Explanation:
        """Explain the score of class `target` (default: the top-1) on `image` with
        `method` (one of onnx_sise.methods.METHODS). `image` is a path, encoded bytes, a PIL
        image, an (H, W, 3) uint8 RGB array or a preprocessed float tensor of the model's
        input shape (see onnx_sise.images.model_input). Options are the fields of the methods' option records
        (mu, fusion, layer, rise_masks, seed, ...). `max_seconds` and `cancel` stop a long
        explanation with TimeLimitError / CancelledError at the next batch of masked passes."""
        targets = None if target is None else [target]
        return self.explain_targets(image, targets, method=method, progress=progress, max_seconds=max_seconds,
                                    cancel=cancel, **options)[0]

    def explain_targets(self, image: ImageLike, targets: Sequence[int] | None = None, *, top_k: int | None = None,
                        method: str = "sise", progress: bool = False, max_seconds: float | None = None,
                        cancel: CancelToken | None = None, **options: object) -> list[Explanation]:
        """One explanation per target (given, or the top_k classes, default the top-1).
        The masked passes are shared: one pass scores every target."""
        if not isinstance(progress, (bool, np.bool_)):
            raise OptionError(f"progress must be True or False, got {progress!r:.40}")
        stop = Cancellation.start(max_seconds, cancel)
        records = checked(method, options)
        started = time.perf_counter()
        x, photo_size = self.preprocess(image)
        need = METHODS[method].gradients(records, self.info) if METHODS[method].gradients is not None else None
        call = None
        if need is None:
            scores = self.model.scores(x)
            self._check_scores(scores)
            chosen = self._choose_targets(scores, targets, top_k)
        else:  # the method's own gradient call gives the scores: no forward pass of ours
            scores, chosen, call = self._first_call(x, targets, top_k, need)
        bar = ProgressBar(None, f"{method} {','.join(map(str, chosen))}") if progress else None
        ctx = Context(model=self.model, image=x, targets=chosen,
                      batch=np.empty((self.batch_size, *x.shape), dtype=np.float32),
                      progress=bar if bar is not None else no_progress, prefetch=self.prefetch, cancellation=stop,
                      io_binding=self._io_binding(x) if self.io_binding and METHODS[method].io_binding else None)
        if call is not None:
            ctx.remember(chosen, need.objective, need.from_tap, call)
        try:
            results = METHODS[method].explain(ctx, *records)
        finally:
            if bar is not None:
                bar.close()
        if not all(np.isfinite(r.saliency).all() for r in results):
            raise ModelError(f"the {method} map is not finite: the model returned NaN or infinite scores on masked "
                             "inputs")
        seconds = time.perf_counter() - started
        log.debug("%s of classes %s: %d masked passes in %.3f s", method, chosen, ctx.passes, seconds)
        return [Explanation(
            saliency=to_photo(r.saliency, photo_size), target=t, label=self.info.label(t), score=float(scores[t]),
            method=method, block_maps=r.block_maps, masks_selected=r.masks_selected, masks_used=r.masks_used,
            seconds=seconds, passes=ctx.passes, details=r.details,
        ) for t, r in zip(chosen, results)]

    def _io_binding(self, x: np.ndarray) -> IoBindingPipeline:
        largest = max(t.height * t.width for t in self.info.taps)
        return IoBindingPipeline(self.model, x, self.batch_size, largest, fixed_batch=self.fixed_batch)

    def _check_scores(self, scores: np.ndarray) -> None:
        if not np.isfinite(scores).all():
            raise ModelError(f"the model returned NaN or infinite scores for this input ({self.model.source})")

    def _first_call(self, x: np.ndarray, targets: Sequence[int] | None, top_k: int | None,
                    need: GradientNeed) -> tuple[np.ndarray, list[int], GradientCall]:
        """The method's gradient call made first, for the given targets or (weights over
        ranks) the top classes: the scores, the targets and the call."""
        classes = self.info.num_classes
        if targets is not None:
            chosen = self._choose_targets(None, targets, top_k)
            rows = np.zeros((len(chosen), classes), np.float32)
            rows[np.arange(len(chosen)), chosen] = 1.0
        else:
            k = self._top_k(top_k)
            rows = np.zeros((k, classes), np.float32)
            rows[np.arange(k), np.arange(k)] = 1.0
        zeros = np.zeros((1, classes), np.float32)
        weights = (rows, zeros) if need.objective == SCORE else (zeros, rows)
        call = self.model.gradients(x, *weights, from_tap=need.from_tap, by_rank=targets is None)
        self._check_scores(call.scores)
        if targets is None:
            chosen = [int(c) for c in np.argsort(-call.scores, kind="stable")[:rows.shape[0]]]
        return call.scores, chosen, call

    def _top_k(self, top_k: int | None) -> int:
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)):
            raise OptionError(f"top_k must be an integer, got {top_k!r}")
        k = 1 if top_k is None else int(top_k)
        if not 1 <= k <= self.info.num_classes:
            raise TargetError(f"top_k must be between 1 and {self.info.num_classes}, got {k}")
        return k

    def _choose_targets(self, scores: np.ndarray | None, targets: Sequence[int] | None,
                        top_k: int | None) -> list[int]:
        if targets is not None and top_k is not None:
            raise TargetError("give targets or top_k, not both")
        if targets is None:
            k = self._top_k(top_k)
            assert scores is not None
            return [int(c) for c in np.argsort(-scores, kind="stable")[:k]]
        if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
            raise OptionError(f"targets must be a list of class ids, got {targets!r}")
        chosen = [self._check_target(t) for t in targets]
        if not chosen:
            raise TargetError("no target class given")
        if len(set(chosen)) != len(chosen):
            raise TargetError(f"target classes repeat: {chosen}")
        return chosen

    def _check_target(self, target: object) -> int:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TargetError(f"target must be a class id (int), got {target!r}")
        if not 0 <= target < self.info.num_classes:
            raise TargetError(f"class id {target} is out of range: this model has classes 0..{self.info.num_classes - 1}")
        return int(target)


def checked_source(model: object) -> ModelSource:
    """`model` if it is a path or a model's bytes (OptionError otherwise)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return model
    if isinstance(model, (str, os.PathLike)):
        return path_option("model", model)  # type: ignore[return-value]
    raise OptionError(f"model must be a path or the model's bytes, got {type(model).__name__}")


def path_option(name: str, value: object) -> str | os.PathLike[str] | None:
    """None, or a path (str or os.PathLike) without NUL bytes (OptionError otherwise)."""
    if value is None:
        return None
    text = text_path(value)
    if text is None:
        raise OptionError(f"{name} must be a path (str or os.PathLike of str), got {type(value).__name__}")
    if "\0" in text:
        raise OptionError(f"{name} {text!r} holds a NUL byte: not a usable path")
    return value


def checked_providers(providers: object) -> list[str | tuple[str, dict]]:
    """onnxruntime's providers as it takes them: a list of names or (name, options dict)."""
    if isinstance(providers, (list, tuple)) and all(
            isinstance(p, str) or (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                   and isinstance(p[1], dict)) for p in providers):
        return list(providers)
    raise OptionError(f"providers must be a list of names or (name, options dict) pairs, like "
                      f"['CPUExecutionProvider'], got {providers!r:.80}")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def capped_threads(threads: object) -> int | None:
    """onnxruntime intra-op threads: None or 0 (onnxruntime's choice), or a count capped
    at the CPUs this process has (more threads than cores only contend)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
        raise OptionError(f"threads must be a positive integer (or None: onnxruntime's choice), got {threads!r}")
    cpus = available_cpus()
    if threads > cpus:
        log.info("threads=%d capped at the %d CPUs this process has", threads, cpus)
    return min(int(threads), cpus)


def to_photo(saliency: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """Min-max normalised (AOP eq. 4) and resized to the photo; constant maps become 0.
    The photo-sized map is the only photo-sized array made, clipped in place."""
    unit = np.array(saliency, dtype=np.float32, copy=True)[None]
    kernels.minmax_normalize(unit)
    photo = kernels.upsample_bilinear(unit, *photo_size)[0]
    return np.clip(photo, 0.0, 1.0, out=photo)
