"""The server's gate: pure ASGI middleware for what must run before the body is parsed.

Auth, the content type, the body-size limit and the per-route metrics; an oversized or
unauthorised request never reaches JSON parsing.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import ServerConfig
from .metrics import Metrics
from .service import error_body

__all__ = [
    "INVOCATIONS", "Gate", "KNOWN_ROUTES", "OPEN_ROUTES", "RERANK_ROUTES", "SCORE_ROUTES",
    "SCORING_ROUTES",
]

SCORE_ROUTES = ("/score", "/v1/score")
RERANK_ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank")
# SageMaker's route: a score or rerank body, dispatched on its fields (as vLLM).
INVOCATIONS = "/invocations"
SCORING_ROUTES = frozenset((*SCORE_ROUTES, *RERANK_ROUTES, INVOCATIONS))
# Open with --api-key too: probes, scrapers and the API description carry no data.
OPEN_ROUTES = frozenset({"/health", "/ping", "/metrics", "/version", "/docs",
                         "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
KNOWN_ROUTES = SCORING_ROUTES | OPEN_ROUTES | {"/v1/models"}

logger = logging.getLogger("engine.server")

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _send_json(send: Any, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class Gate:
    """Pure ASGI middleware: checks that must run before the body is parsed.

    The body is read here (up to the limit) and replayed to the app, so an oversized or
    unauthorised request never reaches JSON parsing.
    """

    def __init__(self, app: ASGIApp, *, config: ServerConfig, metrics: Metrics) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics
        self._key = config.api_key.encode() if config.api_key else None

    def _authorised(self, scope: MutableMapping[str, Any]) -> bool:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self._key is not None and \
            hmac.compare_digest(token.strip().encode(), self._key)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"
        status = [0]  # 0 until the response has started

        async def send_recording(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        scoring = path in SCORING_ROUTES
        started = time.perf_counter()
        if scoring:
            self.metrics.in_flight += 1
        try:
            await self._gate(scope, receive, send_recording, path, scoring)
        except Exception as exc:
            # Answered here, not by Starlette's outermost error middleware: that one re-raises
            # after its 500, and the server then drops the keep-alive connection without a
            # "Connection: close", so a client's next request on it is reset.
            if status[0]:
                raise  # the response is already on its way; nothing sane can follow it
            logger.exception("unexpected error answering %s %s", scope.get("method"), path)
            status[0] = 500
            await _send_json(send, 500, error_body(
                500, f"{type(exc).__name__}: {exc}", "InternalServerError"))
        finally:
            if scoring:
                self.metrics.in_flight -= 1
            self.metrics.observe(route, status[0] or 500, time.perf_counter() - started)

    async def _gate(self, scope: MutableMapping[str, Any], receive: Any, send: Any, path: str,
                    scoring: bool) -> None:
        if self._key is not None and path not in OPEN_ROUTES and not self._authorised(scope):
            await _send_json(send, 401, {"error": "Unauthorized"})
            return
        if not (scoring and scope["method"] == "POST"):
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            await _send_json(send, 400, error_body(
                400, f"Unsupported Media Type: Only 'application/json' is allowed (got "
                     f"{content_type or 'no content type'!r}).", "Bad Request"))
            return
        limit = self.config.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, _too_large(int(declared), limit))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, _too_large(size, limit, at_least=True))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: MutableMapping[str, Any] = await receive()
            return message

        await self.app(scope, replay, send)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> dict[str, Any]:
    amount = f"more than {limit}" if at_least else str(size)
    return error_body(
        413, f"Request body is {amount} bytes, over the limit of {limit} bytes "
             "(--max-body-bytes). Send fewer or shorter documents per request.",
        "PayloadTooLargeError", "body")


