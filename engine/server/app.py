"""The vLLM-compatible scoring server: a FastAPI app around one loaded ``Scorer``.

Routes (spec §1): ``/score`` and ``/v1/score``; ``/rerank``, ``/v1/rerank`` and ``/v2/rerank``;
``/health``, ``/v1/models``, ``/version``, Prometheus ``/metrics`` and the OpenAPI page at
``/docs``. Request spellings, response bodies and error bodies follow vLLM 0.33; where we differ
it is on purpose: with an API key every route but health, metrics, version and the docs needs
it (vLLM leaves ``/score`` and ``/rerank`` open), and request limits answer 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..errors import InputError, InputTooLongError, ScorerError
from ..pairing import pair_indices, validate_truncate_prompt_tokens
from ..ranking import rank
from ..types import ScoreResult
from .batcher import MicroBatcher, ServerClosing
from .metrics import Metrics
from .protocol import (
    ErrorResponse,
    MultiModalInput,
    RerankRequest,
    RerankResponse,
    ScoreRequest,
    ScoreResponse,
)

__all__ = ["ApiError", "ServerConfig", "create_app"]

logger = logging.getLogger("engine.server")

SCORE_ROUTES = ("/score", "/v1/score")
RERANK_ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank")
SCORING_ROUTES = frozenset(SCORE_ROUTES + RERANK_ROUTES)
# Open with --api-key too: probes, scrapers and the API description carry no data.
OPEN_ROUTES = frozenset({"/health", "/metrics", "/version", "/docs", "/docs/oauth2-redirect",
                         "/openapi.json", "/redoc"})
KNOWN_ROUTES = SCORING_ROUTES | OPEN_ROUTES | {"/v1/models"}

# The score spellings vLLM accepts, newest first (spec §1.2).
SPELLINGS = (("queries", "documents"), ("queries", "items"), ("data_1", "data_2"),
             ("text_1", "text_2"))

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How the server answers. Every field has a safe default.

    Attributes:
        served_model_name: the name in responses and ``/v1/models``; default the model path.
        api_key: when set, every route but health/metrics/version/docs needs
            ``Authorization: Bearer <key>``.
        max_documents_per_request: more documents in one request answer 413.
        max_body_bytes: a larger request body answers 413.
        batching: merge concurrent requests into one model call (dynamic micro-batching).
        batch_wait_ms: how long a request waits for others to join its batch.
        max_batch_pairs / max_batch_tokens: the budget of one merged model call (tokens are
            estimated at 4 characters each).
    """

    served_model_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_documents_per_request: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    batching: bool = True
    batch_wait_ms: float = 2.0
    max_batch_pairs: int = 256
    max_batch_tokens: int = 32768

    def __post_init__(self) -> None:
        for name in ("max_documents_per_request", "max_body_bytes", "max_batch_pairs",
                     "max_batch_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        wait = self.batch_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
            raise InputError(f"batch_wait_ms must be a number ≥ 0, got {self.batch_wait_ms!r}.")
        if self.api_key is not None and not self.api_key:
            raise InputError("api_key is empty; pass a key or None to turn auth off.")


class ApiError(Exception):
    """An error answered with vLLM's body ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "BadRequestError",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param


def error_body(status: int, message: str, type: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": status}}


def _error_response(status: int, message: str, type: str, param: str | None = None
                    ) -> JSONResponse:
    return JSONResponse(error_body(status, message, type, param), status_code=status)


def dotted_param(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "documents", "list[...]", 2, "str")`` → ``"body.documents.2"``.

    pydantic tags union members in ``loc``; vLLM's param is the field path without them.
    """
    parts = []
    for item in loc:
        if isinstance(item, int) or (isinstance(item, str) and item.isidentifier()
                                     and item not in ("str", "int", "float", "bool", "dict",
                                                      "list", "MultiModalInput")):
            parts.append(str(item))
    return ".".join(parts)


def validation_message(errors: Any) -> tuple[str, str | None]:
    """pydantic errors → (message, param) for vLLM's "Bad Request" body; one line per field."""
    errors = list(errors)
    if not errors:
        return "Invalid request body.", None
    if errors[0].get("type") == "json_invalid":
        reason = errors[0].get("ctx", {}).get("error", "invalid JSON")
        return f"The request body is not valid JSON: {reason}.", "body"
    seen: dict[str, str] = {}
    for error in errors:
        seen.setdefault(dotted_param(error.get("loc", ())), str(error.get("msg")))
    lines = [f"{param}: {msg}" for param, msg in list(seen.items())[:4]]
    return "; ".join(lines), next(iter(seen))


# -- pure request handling -------------------------------------------------------------------------
def score_sides(body: ScoreRequest) -> tuple[str, str]:
    """The field names of the two sides of a score request (exactly one spelling)."""
    given = {name for name in ("queries", "documents", "items", "data_1", "data_2", "text_1",
                               "text_2") if getattr(body, name) is not None}
    matches = [pair for pair in SPELLINGS if set(pair) <= given]
    used = {name for pair in matches for name in pair}
    if len(matches) == 1 and used == given:
        return matches[0]
    spellings = ", ".join(f"{a}/{b}" for a, b in SPELLINGS)
    got = ", ".join(sorted(given)) or "neither side"
    raise ApiError(400, f"A score request needs the two sides in one spelling ({spellings}); "
                        f"got {got}.", type="Bad Request", param="body")


def as_texts(value: Any, *, side: str, model: str) -> list[str]:
    """A side of the request as a list of strings; multimodal input is refused (text model)."""
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if isinstance(item, MultiModalInput):
            raise ApiError(
                400, f"MultiModalParam is not supported for `{model}`: {side}[{i}] is a "
                     "{'content': [...]} object, and this server scores text only. Send plain "
                     "strings.", param=side)
    return list(items)


def resolve_options(body: Any, max_length: int) -> tuple[bool, int | None]:
    """(use_activation, truncate_prompt_tokens) for the engine; 400 for what can't be honoured."""
    use_activation = body.use_activation
    for alias in (body.softmax, body.activation):
        if use_activation is None:
            use_activation = alias
    if use_activation is None and body.raw_scores:
        use_activation = False  # TEI/Infinity clients ask for logits this way
    if body.truncation_side == "left":
        raise ApiError(400, "truncation_side='left' is not supported: this server keeps the "
                            "first tokens (right truncation). Omit the field or send 'right'.",
                       param="truncation_side")
    for name in ("max_tokens_per_query", "max_tokens_per_doc"):
        value = getattr(body, name)
        if value < 0:
            raise ApiError(400, f"`{name}` must be a non-negative integer", param=name)
        if value > 0:
            raise ApiError(400, f"`{name}` is not supported by this server; use "
                                "truncate_prompt_tokens to cut each model input instead.",
                           param=name)
    if body.instruction is not None or body.chat_template_kwargs:
        raise ApiError(400, "instruction/chat_template_kwargs need a score template, and this "
                            "server's model has none; omit them.", param="instruction")
    if body.mm_processor_kwargs is not None:
        raise ApiError(400, "mm_processor_kwargs is not accepted: this server scores text only.",
                       param="mm_processor_kwargs")
    try:
        tpt = validate_truncate_prompt_tokens(body.truncate_prompt_tokens, max_length)
    except InputError as exc:
        raise ApiError(400, str(exc), param="truncate_prompt_tokens") from None
    return use_activation is not False, tpt


def usage(results: list[ScoreResult], query_index: list[int]) -> int:
    """``usage.prompt_tokens`` as vLLM counts it: every model prompt once.

    A cross-encoder reads one prompt per pair (the query again in each). Bi-encoder and late
    interaction encode each entry of the query list once and each document once, so a 1:N
    request counts its query once.
    """
    if not results or results[0].query_tokens is None:
        return sum(r.num_tokens for r in results)
    queries: dict[int, int] = {}
    documents = 0
    for r, q in zip(results, query_index, strict=True):
        query = r.query_tokens or 0
        queries[q] = query
        documents += r.num_tokens - query
    return documents + sum(queries.values())


# -- the gate: auth, content type, body limit and metrics, before FastAPI sees the request ---------
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


class _Gate:
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
        status = [500]

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
        finally:
            if scoring:
                self.metrics.in_flight -= 1
            self.metrics.observe(route, status[0], time.perf_counter() - started)

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
                     f"{content_type or 'no content type'!r}).", "Bad Request",
                "header.content-type"))
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


# -- the app ---------------------------------------------------------------------------------------
def create_app(scorer: Any, config: ServerConfig | None = None, **options: Any) -> FastAPI:
    """Build the server around an already loaded :class:`engine.Scorer`.

    Args:
        scorer: the loaded model (``Scorer.load(...)``).
        config: a :class:`ServerConfig`; or pass its fields as keyword ``options``.

    Example:
        >>> import uvicorn                                               # doctest: +SKIP
        >>> app = create_app(Scorer.load("path/to/ce"), api_key="secret")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)                # doctest: +SKIP
    """
    if config is None:
        config = ServerConfig(**options)
    elif options:
        raise InputError("Pass either config= or keyword options, not both.")
    from .. import __version__

    served = config.served_model_name or str(scorer.model)
    metrics = Metrics(model=served)
    batcher = MicroBatcher(
        scorer._score_resolved, enabled=config.batching, max_wait_s=config.batch_wait_ms / 1000,
        max_batch_pairs=config.max_batch_pairs, max_batch_tokens=config.max_batch_tokens,
    )
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            # uvicorn runs this after in-flight requests are answered; drain what is queued.
            await batcher.stop()

    app = FastAPI(
        title="scorer", version=__version__, lifespan=lifespan,
        description="vLLM-compatible score and rerank API served by the local scoring engine "
                    f"({scorer.score_type.value}, model `{served}`).",
    )
    app.state.scorer = scorer
    app.state.config = config
    app.state.batcher = batcher
    app.state.metrics = metrics

    def check_limit(n: int, side: str) -> None:
        cap = config.max_documents_per_request
        if n > cap:
            raise ApiError(413, f"This request has {n} {side}, over the limit of {cap} per request "
                                "(--max-documents-per-request). Split it into smaller requests.",
                           type="PayloadTooLargeError", param=side)

    def request_id(request: Request, body: Any) -> str:
        return request.headers.get("x-request-id") or body.request_id or uuid.uuid4().hex

    async def run(
        queries: list[str], documents: list[str], body: Any
    ) -> tuple[list[ScoreResult], int]:
        """Results in pair order, and the request's prompt tokens."""
        query_index = pair_indices(len(queries), len(documents))
        use_activation, tpt = resolve_options(body, scorer.max_length)
        results = await batcher.submit(queries, documents, query_index,
                                       use_activation=use_activation, truncate_prompt_tokens=tpt)
        tokens = usage(results, query_index)
        metrics.add_scored(len(results), tokens)
        return results, tokens

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse}, 401: {"description": 'Body {"error": "Unauthorized"}'},
        413: {"model": ErrorResponse}, 500: {"model": ErrorResponse},
    }

    async def score(body: ScoreRequest, request: Request) -> JSONResponse:
        left, right = score_sides(body)
        queries = as_texts(getattr(body, left), side=left, model=served)
        documents = as_texts(getattr(body, right), side=right, model=served)
        check_limit(max(len(queries), len(documents)), right)
        results, tokens = await run(queries, documents, body)
        return JSONResponse({
            "id": f"score-{request_id(request, body)}",
            "object": "list",
            "created": int(time.time()),
            "model": served,
            "data": [{"index": r.index, "object": "score", "score": r.score} for r in results],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None, "completion_tokens_details": None},
        })

    async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
        (query,) = as_texts(body.query, side="query", model=served)
        documents = as_texts(body.documents, side="documents", model=served)
        check_limit(len(documents), "documents")
        results, tokens = await run([query], documents, body)
        ranked = rank(results, documents, top_n=body.top_n or None)
        return JSONResponse({
            "id": f"score-{request_id(request, body)}",
            "model": served,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": [{"index": r.index, "document": {"text": r.document, "multi_modal": None},
                         "relevance_score": r.score} for r in ranked],
        })

    for path in SCORE_ROUTES:
        app.post(path, response_model=ScoreResponse, responses=error_responses,
                 summary="Score pairs (vLLM Score API)",
                 operation_id=f"score{path.replace('/', '_')}")(score)
    for path in RERANK_ROUTES:
        app.post(path, response_model=RerankResponse, responses=error_responses,
                 summary="Rerank documents (vLLM/Jina/Cohere-style Rerank API)",
                 operation_id=f"rerank{path.replace('/', '_')}")(rerank)

    @app.get("/health", summary="200 while the server takes work")
    async def health() -> Response:
        return Response(status_code=503 if batcher.closing else 200)

    @app.get("/v1/models", summary="The served model (OpenAI list shape)")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{
            "id": served, "object": "model", "created": created, "owned_by": "scorer",
            "root": str(scorer.model), "parent": None, "max_model_len": scorer.max_length,
            "score_type": scorer.score_type.value, "permission": [],
        }]})

    @app.get("/version")
    async def version() -> JSONResponse:
        return JSONResponse({"version": __version__})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(batcher.stats),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return _error_response(400, message, "Bad Request", param)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(ScorerError)
    async def on_scorer_error(_: Request, exc: ScorerError) -> JSONResponse:
        if isinstance(exc, ServerClosing):
            return _error_response(503, str(exc), "ServiceUnavailableError")
        if isinstance(exc, InputError):
            param = "input_tokens" if isinstance(exc, InputTooLongError) else None
            return _error_response(400, str(exc), "BadRequestError", param)
        logger.exception("scoring failed")
        return _error_response(500, f"{type(exc).__name__}: {exc}", "InternalServerError")

    @app.exception_handler(NotImplementedError)
    async def on_not_implemented(_: Request, exc: NotImplementedError) -> JSONResponse:
        return _error_response(501, str(exc) or "Not implemented.", "NotImplementedError")

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response, so the server's log gets the traceback.
        return _error_response(500, f"{type(exc).__name__}: {exc}", "InternalServerError")

    app.add_middleware(_Gate, config=config, metrics=metrics)
    return app
