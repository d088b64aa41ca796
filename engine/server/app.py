"""The vLLM-compatible scoring server: a FastAPI app around one loaded ``Scorer``.

Routes (spec §1): ``/score`` and ``/v1/score``; ``/rerank``, ``/v1/rerank`` and ``/v2/rerank``;
``/health``, ``/v1/models``, ``/version``, Prometheus ``/metrics`` and the OpenAPI page at
``/docs``. Request spellings, response bodies and error bodies follow vLLM 0.33; where we differ
it is on purpose: with an API key every route but health, metrics, version and the docs needs
it (vLLM leaves ``/score`` and ``/rerank`` open), and request limits answer 413.

This module only wires: routes to :class:`~engine.server.service.ScoringService`, errors to
vLLM's error body, and the :class:`~engine.server.gate.Gate` in front.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, InputTooLongError, ScorerError
from ..types import ScoreType
from .batcher import MicroBatcher, ServerClosing
from .config import ServerConfig
from .embeddings import EMBEDDINGS_ROUTE, EmbeddingRequest, EmbeddingResponse, embed
from .gate import INVOCATIONS, RERANK_ROUTES, SCORE_ROUTES, Gate
from .metrics import Metrics
from .protocol import (
    ErrorResponse,
    ModelList,
    RerankRequest,
    RerankResponse,
    ScoreRequest,
    ScoreResponse,
)
from .service import SPELLINGS, ApiError, ScoringService, error_body, validation_message

__all__ = ["ApiError", "RERANK_ROUTES", "SCORE_ROUTES", "ServerConfig", "create_app"]

logger = logging.getLogger("engine.server")


def _error_response(status: int, message: str, type: str, param: str | None = None
                    ) -> JSONResponse:
    return JSONResponse(error_body(status, message, type, param), status_code=status)


def invocation_kind(body: Any) -> type[RerankRequest] | type[ScoreRequest] | None:
    """Which request a /invocations body is, by its fields (vLLM tries each in turn)."""
    if not isinstance(body, dict):
        return None
    if "query" in body and "documents" in body:
        return RerankRequest
    if any(a in body and b in body for a, b in SPELLINGS):
        return ScoreRequest
    return None


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
    service = ScoringService(scorer, served=served, batcher=batcher, metrics=metrics,
                             max_documents=config.max_documents_per_request)

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
    app.state.service = service

    def request_id(request: Request, body: Any) -> str:
        return request.headers.get("x-request-id") or body.request_id or uuid.uuid4().hex

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse}, 401: {"description": 'Body {"error": "Unauthorized"}'},
        413: {"model": ErrorResponse}, 500: {"model": ErrorResponse},
    }

    async def score(body: ScoreRequest, request: Request) -> JSONResponse:
        answer = await service.score(body, request_id(request, body))
        return JSONResponse(answer.model_dump())

    async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
        answer = await service.rerank(body, request_id(request, body))
        return JSONResponse(answer.model_dump())

    # vLLM serves its Score API only for one-label classifiers (and embedding models): a
    # two-label checkpoint gets no scoring routes at all, as there.
    scoring = scorer.score_type is not ScoreType.CROSS_ENCODER or getattr(
        scorer, "num_labels", 1) in (1, None)
    if not scoring:
        logger.warning("%s has %s labels: the Score API is only enabled for num_labels == 1, "
                       "so /score and /rerank are not served (as vLLM).", served,
                       scorer.num_labels)
    for path in SCORE_ROUTES if scoring else ():
        app.post(path, response_model=ScoreResponse, responses=error_responses,
                 summary="Score pairs (vLLM Score API)",
                 operation_id=f"score{path.replace('/', '_')}")(score)
    for path in RERANK_ROUTES if scoring else ():
        app.post(path, response_model=RerankResponse, responses=error_responses,
                 summary="Rerank documents (vLLM/Jina/Cohere-style Rerank API)",
                 operation_id=f"rerank{path.replace('/', '_')}")(rerank)

    if scorer.score_type is ScoreType.BI_ENCODER:
        @app.post(EMBEDDINGS_ROUTE, response_model=EmbeddingResponse, responses=error_responses,
                  summary="OpenAI-compatible embeddings (bi-encoder models)")
        async def embeddings(body: EmbeddingRequest, request: Request) -> JSONResponse:
            answer = await embed(service, body, request_id(request, body))
            return JSONResponse(answer.model_dump())

    @app.post(INVOCATIONS, summary="SageMaker's route: a rerank or score body, by its fields",
              responses=error_responses)
    async def invocations(request: Request) -> JSONResponse:
        body = await request.json()
        kind = invocation_kind(body) if scoring else None
        if kind is None:
            raise ApiError(400, "Cannot find suitable handler for request. Expected one of: "
                                "['RerankRequest', 'ScoreRequest']" if scoring else
                                "Cannot find suitable handler for request.")
        try:
            parsed = kind.model_validate(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        if isinstance(parsed, RerankRequest):
            return await rerank(parsed, request)
        return await score(parsed, request)

    @app.get("/health", summary="200 while the server takes work")
    async def health() -> Response:
        return Response(status_code=503 if batcher.closing else 200)

    @app.get("/ping", summary="SageMaker's health probe: 200 while the server takes work")
    async def ping() -> Response:
        return Response(status_code=503 if batcher.closing else 200)

    @app.get("/v1/models", summary="The served model (OpenAI list shape)",
             response_model=ModelList)
    async def models() -> JSONResponse:
        return JSONResponse(service.models().model_dump())

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

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):  # unknown route / method: FastAPI's body, as vLLM's
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)
        # e.g. a body that is not UTF-8 or nests too deep to parse: vLLM's error body.
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message += (": it must be UTF-8 JSON (invalid UTF-8, or nesting too deep for the "
                        "parser, can't be read).")
        return _error_response(exc.status_code, message, "Bad Request", "body")

    app.add_middleware(Gate, config=config, metrics=metrics)
    return app
