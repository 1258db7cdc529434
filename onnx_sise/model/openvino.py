"""The masked passes (SISE eq. 5's model scores of the masked inputs, RISE's and
Score-CAM's scores alike) in OpenVINO: the scoring sub-graph (model/scoring.py) compiled
for the CPU or a GPU with a precision hint; and the gradient call (SISE eq. 6's
gradients, Grad-CAM's) compiled in f32, which OpenVINO runs faster than onnxruntime and
equal to it within 3e-6 (benchmarks/RESULTS.md). The rest stays in onnxruntime.

OpenVINO is optional (`pip install onnx_sise[openvino]`) and imported only here, when a
model is compiled. Precision: "f32"; "bf16" (bfloat16 arithmetic, on CPUs that have
AVX512_BF16 or AMX); "auto", bf16 where the device has it and f32 elsewhere.

Thread safety: an OpenVINO infer request is not thread-safe, a compiled model is. Each
call takes an idle request from a pool (a new one when none is idle) and gives it back
when its scores are copied out, so concurrent calls never share a request and the pool
holds at most as many requests as calls ever ran at once.
"""

from __future__ import annotations

import queue

import numpy as np
import onnx

from ..errors import ModelError, OptionError
from .info import ModelInfo
from .runtime import first_line
from .scoring import gradient_graph, scoring_graph

# provider -> OpenVINO device
DEVICES = {"openvino": "CPU", "openvino-gpu": "GPU"}
PRECISIONS = ("auto", "f32", "bf16")
# f32 by default: bf16 keeps SISE's, RISE's and Score-CAM's maps (worst r 0.967 over the 34
# photos) but not every Ada-SISE map (r 0.914 on one photo): benchmarks/RESULTS.md.
DEFAULT_PRECISION = "f32"
# OpenVINO's names of the precisions, and the device capability bf16 needs.
HINTS = {"f32": "f32", "bf16": "bf16"}
BF16_CAPABILITY = "BF16"
# One request at a time per call: LATENCY (one stream with every thread) measured as fast
# as THROUGHPUT for one synchronous request, which THROUGHPUT gives a single stream's threads.
PERFORMANCE_HINT = "LATENCY"


def import_openvino():  # noqa: ANN201
    """The openvino module, or one ModelError line naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise ModelError("provider openvino needs the openvino package: pip install 'onnx_sise[openvino]'") from None
    return openvino


def checked_precision(precision: object) -> str:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r:.40}")
    return precision


def device_precision(core: object, device: str, precision: str) -> str:
    """The precision `precision` ("auto", "f32", "bf16") means on `device`: "auto" is bf16
    where the device lists BF16 among its capabilities, else f32; bf16 elsewhere is refused."""
    capabilities = set(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))  # type: ignore[attr-defined]
    if precision == "auto":
        return "bf16" if BF16_CAPABILITY in capabilities else "f32"
    if precision == "bf16" and BF16_CAPABILITY not in capabilities:
        raise OptionError(f"precision bf16 needs a device with bfloat16 arithmetic; OpenVINO's {device} here has "
                          f"{', '.join(sorted(capabilities))}: use precision f32 or auto")
    return precision


class Compiled:
    """One model compiled by OpenVINO with its pool of infer requests (thread-safe calls)."""

    def __init__(self, core: object, graph: onnx.ModelProto, device: str, config: dict[str, object],
                 source: str) -> None:
        self.source = source
        try:
            model = core.read_model(graph.SerializeToString(), b"")  # type: ignore[attr-defined]
            self.compiled = core.compile_model(model, device, config)  # type: ignore[attr-defined]
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise ModelError(f"OpenVINO cannot compile {graph.graph.name} of {source} ({first_line(exc)})") from None
        self.idle: queue.SimpleQueue = queue.SimpleQueue()

    def __call__(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """The named outputs for `feeds` (input name -> array), copied out of the request."""
        try:
            request = self.idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({name: np.ascontiguousarray(value) for name, value in feeds.items()})
            return [np.array(request.get_tensor(name).data, copy=True) for name in outputs]
        except Exception as exc:
            raise ModelError(f"{self.source} failed in OpenVINO ({first_line(exc)}): export the model again") from None
        finally:
            self.idle.put(request)


class OpenVinoModel:
    """The scoring sub-graph of an explainable ONNX compiled by OpenVINO in `precision`,
    and its gradient sub-graph (when the file has one as model/scoring.py finds it) in
    f32: bf16 moves the gradients by up to 30 % of their largest value.

    `model` is the explainable ONNX (its external data inlined), `provider` a key of
    DEVICES, `threads` the CPU's inference threads (None: OpenVINO's choice)."""

    def __init__(self, model: onnx.ModelProto, info: ModelInfo, source: str, provider: str = "openvino",
                 precision: str = DEFAULT_PRECISION, threads: int | None = None) -> None:
        openvino = import_openvino()
        self.device = DEVICES[provider]
        self.info = info
        core = openvino.Core()
        if self.device not in core.available_devices:
            raise ModelError(f"OpenVINO finds no {self.device} device here (it has {', '.join(core.available_devices)})"
                             f": use provider openvino (the CPU), or install the {self.device} driver")
        self.precision = device_precision(core, self.device, checked_precision(precision))
        config: dict[str, object] = {"PERFORMANCE_HINT": PERFORMANCE_HINT}
        if threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.scoring = Compiled(core, scoring_graph(model, info, source), self.device,
                                {**config, "INFERENCE_PRECISION_HINT": HINTS[self.precision]}, source)
        gradient = gradient_graph(model, info)
        self.gradient = None if gradient is None else Compiled(
            core, gradient, self.device, {**config, "INFERENCE_PRECISION_HINT": HINTS["f32"]}, source)

    def batch_scores(self, batch: np.ndarray) -> np.ndarray:
        """Psi of every class (B, classes) for a batch of model inputs (B, ...)."""
        names = self.info.graph
        return self.scoring({names.masked_batch: batch.astype(np.float32, copy=False)}, [names.batch_scores])[0]
