"""How much work the server takes on: a fixed number of slots (explanations running at
once), a waiting queue of bounded length (Overloaded, answered 503 with Retry-After,
beyond it), a cancel token per request that the client's disconnection, its max_seconds
or the server's shutdown trips, and a bound on the request body (BodyTooLarge: 413).

The explanation itself runs in a worker thread; its slot is given back only when that
thread has stopped, so a cancelled request never leaves work running beyond the slots.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from ..cancel import CancelToken
from .metrics import IN_FLIGHT, QUEUE_DEPTH

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# The ASGI receive channel of the request being handled (set by BodyLimit): once the body
# is read, its next message is http.disconnect when the client leaves.
CURRENT_RECEIVE: contextvars.ContextVar[Receive | None] = contextvars.ContextVar("onnx_sise_receive", default=None)


class Overloaded(Exception):
    """Every slot is busy and the queue is full: 503 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy (all slots and the queue are full): retry after {retry_after} s")
        self.retry_after = retry_after


class BodyTooLarge(Exception):
    """The request body is over the server's limit: 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the limit of {limit} bytes: send a smaller photo "
                         "(or start the server with a larger --max-body-bytes)")


class ClientGone(Exception):
    """The client disconnected: its explanation was cancelled (no one reads an answer)."""


class Slots:
    """`slots` explanations at once, at most `queue` more waiting; `tokens` are the cancel
    tokens of the requests in flight (tripped all at once by cancel_all at shutdown)."""

    def __init__(self, model_name: str, slots: int, queue: int, retry_after: int) -> None:
        self.model_name, self.slots, self.queue, self.retry_after = model_name, slots, queue, retry_after
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0
        self.running = 0
        self.tokens: set[CancelToken] = set()

    @asynccontextmanager
    async def slot(self, token: CancelToken) -> AsyncIterator[None]:
        if self.running + self.waiting >= self.slots + self.queue:
            raise Overloaded(self.retry_after)
        self.waiting += 1
        QUEUE_DEPTH.labels(self.model_name).set(self.waiting)
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
            QUEUE_DEPTH.labels(self.model_name).set(self.waiting)
        self.running += 1
        IN_FLIGHT.labels(self.model_name).set(self.running)
        self.tokens.add(token)
        try:
            yield
        finally:
            self.tokens.discard(token)
            self.running -= 1
            IN_FLIGHT.labels(self.model_name).set(self.running)
            self._semaphore.release()

    def cancel_all(self) -> None:
        for token in list(self.tokens):
            token.cancel()


async def run_cancellable(work: Callable[[], object], token: CancelToken, run: Callable[[Callable[[], object]],
                          Awaitable[object]]) -> object:
    """`work` in a worker thread (through `run`), its token tripped when the client
    disconnects or this task is cancelled; returns only once the thread has stopped."""
    future = asyncio.ensure_future(run(work))
    receive = CURRENT_RECEIVE.get()
    watcher = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
    try:
        waited = {future} if watcher is None else {future, watcher}
        done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            token.cancel()
            log.info("client disconnected: explanation cancelled")
            await asyncio.wait({future})
            future.exception()  # retrieved: the CancelledError it ends with is expected
            raise ClientGone("the client disconnected")
        return future.result()
    finally:
        if not future.done():  # this task was cancelled (shutdown): stop the thread, wait for it
            token.cancel()
            await asyncio.wait({future})
        if watcher is not None:
            watcher.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class BodyLimit:
    """ASGI middleware: refuses bodies over `limit` bytes (413, by Content-Length before
    reading, by counting otherwise) and makes the receive channel known to the model."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _send_json(send, 413, str(BodyTooLarge(self.limit)))
            return
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        CURRENT_RECEIVE.set(counted)
        await self.app(scope, counted, send)


async def _send_json(send: Send, status: int, error: str) -> None:
    import orjson

    body = orjson.dumps({"error": error})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
