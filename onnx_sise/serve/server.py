"""The server: kserve's ModelServer with our model, our error answers (a client's mistake
is a 400 with one JSON line `{"error": ...}`, never a 500 or a traceback), the body
limit, JSON log lines and TorchServe's `POST /explanations/{name}` and
`/predictions/{name}` (a raw photo body, parameters in the query string) on the same app.

Shutdown (SIGTERM, SIGINT): uvicorn stops taking requests and waits `grace_seconds` for
those in flight; then their tasks are cancelled, which trips each explanation's cancel
token (it stops at its next batch of masked passes) and waits for its thread."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from http import HTTPStatus
from pathlib import Path

import kserve
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse
from kserve.model_server import app as kserve_app

from ..errors import CancelledError, SiseError, TimeLimitError
from .limits import BodyLimit, BodyTooLarge, ClientGone, Overloaded
from .model import ExplainerModel, ServeSettings
from .payload import parse_request, query_parameters

DEFAULT_MAX_BODY_BYTES = 32 << 20
CLIENT_CLOSED = 499  # nginx's code: the client left before the answer


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger and the message (merged when it is a
    JSON object itself, as our events are)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        message = record.getMessage()
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        line.update(event if isinstance(event, dict) else {"message": message})
        return json.dumps(line)


def error_answer(status: int, error: BaseException | str, headers: dict[str, str] | None = None) -> ORJSONResponse:
    text = " ".join(str(error).split())  # one line, whatever the message held
    return ORJSONResponse({"error": text}, status_code=status, headers=headers)


def install(app: FastAPI, server: kserve.ModelServer, max_body_bytes: int) -> None:
    """Our middleware, error answers and TorchServe routes on kserve's app (before it
    starts: kserve adds its own routes and handlers then, for its own exception types)."""
    log = logging.getLogger(__name__)

    async def user_error(_: Request, exc: Exception) -> ORJSONResponse:
        if isinstance(exc, TimeLimitError):
            return error_answer(HTTPStatus.GATEWAY_TIMEOUT, exc)
        if isinstance(exc, CancelledError):  # the server is shutting down
            return error_answer(HTTPStatus.SERVICE_UNAVAILABLE, exc)
        log.info(json.dumps({"event": "bad_request", "error": str(exc)}))
        return error_answer(HTTPStatus.BAD_REQUEST, exc)

    async def overloaded(_: Request, exc: Exception) -> ORJSONResponse:
        assert isinstance(exc, Overloaded)
        return error_answer(HTTPStatus.SERVICE_UNAVAILABLE, exc, {"Retry-After": str(exc.retry_after)})

    async def too_large(_: Request, exc: Exception) -> ORJSONResponse:
        return error_answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, exc)

    async def gone(_: Request, exc: Exception) -> ORJSONResponse:
        return error_answer(CLIENT_CLOSED, exc)

    app.add_exception_handler(SiseError, user_error)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(ClientGone, gone)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    async def model_of(name: str) -> ExplainerModel:
        model = await server.dataplane.get_model(name)
        if not isinstance(model, ExplainerModel):
            raise kserve.errors.ModelNotFound(name)
        return model

    async def explanations(model_name: str, request: Request) -> ORJSONResponse:
        model = await model_of(model_name)
        explainer = model._explainer
        parsed = await asyncio.to_thread(parse_request, await request.body(), explainer.info.num_classes,
                                         explainer.max_pixels, model.settings.max_instances,
                                         query_parameters(request.query_params))
        return ORJSONResponse(await model.explain_request(parsed, dict(request.headers)))

    async def predictions(model_name: str, request: Request) -> ORJSONResponse:
        model = await model_of(model_name)
        body = await request.body()
        query = query_parameters(request.query_params)
        payload = body if body.lstrip()[:1] == b"{" else {"instances": [{"b64": _b64(body)}], "parameters": query}
        return ORJSONResponse(await model.predict(payload, dict(request.headers)))

    app.add_api_route("/explanations/{model_name}", explanations, methods=["POST"], response_model=None)
    app.add_api_route("/predictions/{model_name}", predictions, methods=["POST"], response_model=None)


def check_port(port: int, flag: str) -> None:
    """A port the server can listen on (SiseError before the model loads otherwise)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OverflowError:
            raise SiseError(f"{flag} must be a port number in [0, 65535], got {port}") from None
        except OSError as exc:
            raise SiseError(f"{flag} {port} cannot be listened on ({exc.strerror}): choose another") from None


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def serve(model_path: Path, name: str, settings: ServeSettings, http_port: int = 8080, grpc_port: int = 8081,
          enable_grpc: bool = True, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, grace_seconds: int = 30) -> None:
    """Load the model and serve it until a stop signal (blocks)."""
    for port, flag in ((http_port, "--http-port"), *(((grpc_port, "--grpc-port"),) if enable_grpc else ())):
        check_port(port, flag)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    package_log = logging.getLogger("onnx_sise")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    model = ExplainerModel(name, model_path, settings)
    model.load()
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, enable_grpc=enable_grpc,
                                grace_period=grace_seconds, workers=1)
    install(kserve_app, server, max_body_bytes)
    server.start([model])
