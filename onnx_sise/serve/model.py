"""The kserve.Model that serves one explainable ONNX: predict() gives each photo's top-k
classes and scores, explain() each photo's explanation (map and the summary `explain
--json` prints, Explanation.summary()). Both protocols reach predict(): V1
`{"instances": [...]}` and V2 / Open Inference Protocol (a BYTES input of encoded photos,
base64 strings over JSON); explain() is V1 (and /explanations/{name}, server.py).

One Explainer serves every request (it is thread-safe, explainer.py); each explanation
runs in a worker thread under limits.Slots, with its own CancelToken.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from ..cancel import CancelToken
from ..errors import CancelledError, RequestError, SiseError, TimeLimitError
from ..explainer import Explainer, Explanation
from ..images.decode import MAX_PIXELS
from ..images.overlay import encode_grey16_png
from .limits import ClientGone, Overloaded, Slots, run_cancellable
from .metrics import EXPLAIN_SECONDS, OUTCOMES, PASSES
from .payload import MAX_INSTANCES, ExplainRequest, instance_rgb, parse_request

log = logging.getLogger(__name__)
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs the explainer (the `serve` command's flags)."""

    threads: int | None = None
    batch_size: int = 32
    max_pixels: int = MAX_PIXELS
    slots: int = 1
    queue: int = 8
    retry_after: int = 5
    max_instances: int = MAX_INSTANCES
    max_seconds: float | None = None  # the server's bound on every explanation; a request may ask for less


class ExplainerModel(kserve.Model):
    """An explainable ONNX (or a plain classifier, prepared on load) behind kserve."""

    def __init__(self, name: str, model_path: str | Path, settings: ServeSettings = ServeSettings()) -> None:
        super().__init__(name)
        self.model_path, self.settings = model_path, settings
        self.explainer: Explainer | None = None
        self.slots = Slots(name, settings.slots, settings.queue, settings.retry_after)
        self.pool = ThreadPoolExecutor(settings.slots, thread_name_prefix="explain")

    def load(self) -> bool:
        s = self.settings
        self.explainer = Explainer(self.model_path, threads=s.threads, batch_size=s.batch_size,
                                   max_pixels=s.max_pixels)
        self.ready = True
        log.info(json.dumps({"event": "loaded", "model": self.name, "path": str(self.model_path),
                             "classes": self.explainer.info.num_classes, "slots": s.slots, "queue": s.queue}))
        return self.ready

    def stop(self) -> None:
        """Shutdown: every running explanation is cancelled at its next batch."""
        self.slots.cancel_all()
        self.pool.shutdown(wait=False, cancel_futures=True)
        super().stop()

    @property
    def _explainer(self) -> Explainer:
        if self.explainer is None:
            raise kserve.errors.ModelNotReady(self.name)
        return self.explainer

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        explainer = self._explainer
        if isinstance(payload, InferRequest):
            images = await asyncio.to_thread(self._v2_images, payload)
            top_k = _top_k(payload.parameters or {}, explainer)
        else:  # decoding in a thread: the event loop keeps answering
            request = await asyncio.to_thread(parse_request, _without(payload, "top_k"), explainer.info.num_classes,
                                              explainer.max_pixels, self.settings.max_instances)
            images, top_k = request.images, _top_k(_parameters(payload), explainer)
        rows = await asyncio.to_thread(lambda: [self._top(explainer, rgb, top_k) for rgb in images])
        if isinstance(payload, InferRequest):
            classes = np.array([r[0] for r in rows], np.int64)
            scores = np.array([r[1] for r in rows], np.float32)
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, [
                InferOutput("classes", list(classes.shape), "INT64", classes.ravel().tolist()),
                InferOutput("scores", list(scores.shape), "FP32", scores.ravel().tolist())])
        return {"predictions": [{"classes": c, "scores": s, "labels": [explainer.info.label(k) for k in c]}
                                for c, s in rows]}

    @staticmethod
    def _top(explainer: Explainer, rgb: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        x, _ = explainer.preprocess(rgb)
        scores = explainer.model.scores(x)
        best = np.argsort(-scores, kind="stable")[:k]
        return [int(c) for c in best], [float(scores[c]) for c in best]

    def _v2_images(self, request: InferRequest) -> list[np.ndarray]:
        if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
            raise RequestError("a V2 request needs one BYTES input: the encoded photos (base64 strings in JSON)")
        data = request.inputs[0].as_numpy().ravel().tolist()
        if not data or len(data) > self.settings.max_instances:
            raise RequestError(f"a V2 request holds 1 to {self.settings.max_instances} photos, got {len(data)}")
        return [instance_rgb(d, f"photo {i}", self._explainer.max_pixels) for i, d in enumerate(data)]

    async def explain(self, payload: dict | bytes, headers: dict[str, str] | None = None) -> dict:
        explainer = self._explainer
        try:
            request = await asyncio.to_thread(parse_request, payload, explainer.info.num_classes,
                                              explainer.max_pixels, self.settings.max_instances)
        except SiseError:
            OUTCOMES.labels(self.name, "bad_request").inc()
            raise
        return await self.explain_request(request, headers)

    async def explain_request(self, request: ExplainRequest, headers: dict[str, str] | None = None) -> dict:
        """Every instance of `request` explained in one slot, the maps encoded as asked."""
        token = CancelToken()
        started = time.perf_counter()
        waited, outcome = 0.0, "ok"
        try:
            async with self.slots.slot(token):
                waited = time.perf_counter() - started
                work = functools.partial(self._explain_all, request, token)
                loop = asyncio.get_running_loop()
                results = await run_cancellable(work, token, lambda f: loop.run_in_executor(self.pool, f))
            return {"explanations": [self._encoded(r, request.map_format) for r in results]}  # type: ignore[union-attr]
        except TimeLimitError:
            outcome = "timeout"
            raise
        except (CancelledError, ClientGone, asyncio.CancelledError):
            outcome = "cancelled"
            raise
        except SiseError:
            outcome = "bad_request"
            raise
        except Overloaded:
            outcome = "overloaded"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            OUTCOMES.labels(self.name, outcome).inc()
            log.info(json.dumps({"event": "explain", "model": self.name, "method": request.method,
                                 "instances": len(request.images), "outcome": outcome,
                                 "request_id": (headers or {}).get("x-request-id"),
                                 "seconds": round(time.perf_counter() - started, 4),
                                 "queued_seconds": round(waited, 4)}))

    def _explain_all(self, request: ExplainRequest, token: CancelToken) -> list[list[Explanation]]:
        explainer = self._explainer
        limit = _tighter(request.max_seconds, self.settings.max_seconds)
        found = []
        for rgb in request.images:
            began = time.perf_counter()
            results = explainer.explain_targets(rgb, request.targets, top_k=request.top_k, method=request.method,
                                                max_seconds=limit, cancel=token, **request.options)
            EXPLAIN_SECONDS.labels(self.name, request.method).observe(time.perf_counter() - began)
            PASSES.labels(self.name, request.method).inc(results[0].passes)
            found.append(results)
        return found

    @staticmethod
    def _encoded(results: list[Explanation], map_format: str) -> dict:
        height, width = results[0].saliency.shape
        targets = []
        for r in results:
            entry: dict[str, object] = dict(r.summary())
            if map_format in ("png", "both"):
                entry["map_png"] = base64.b64encode(encode_grey16_png(r.saliency)).decode("ascii")
            if map_format in ("array", "both"):
                entry["map"] = r.saliency.tolist()
            targets.append(entry)
        return {"height": height, "width": width, "targets": targets}


def _parameters(payload: object) -> dict:
    parameters = payload.get("parameters") if isinstance(payload, dict) else None
    return parameters if isinstance(parameters, dict) else {}


def _without(payload: object, key: str) -> object:
    """The body with `key` taken out of its parameters (predict reads top_k itself)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("parameters"), dict):
        return payload
    return {**payload, "parameters": {k: v for k, v in payload["parameters"].items() if k != key}}


def _top_k(parameters: dict, explainer: Explainer) -> int:
    classes = explainer.info.num_classes
    k = parameters.get("top_k", min(DEFAULT_TOP_K, classes))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= classes:
        raise RequestError(f"top_k must be an integer in [1, {classes}], got {k!r:.40}")
    return k


def _tighter(asked: float | None, bound: float | None) -> float | None:
    return bound if asked is None else asked if bound is None else min(asked, bound)
