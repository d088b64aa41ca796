"""What the server's routes do, without FastAPI: checks, the model call, the response models.

The pure helpers turn a parsed request into engine arguments (or an :class:`ApiError`); the
:class:`ScoringService` runs them through the micro-batcher and builds the ``protocol``
response models. ``engine.server.app`` only wires routes and errors to it.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import InputError
from ..pairing import check_text, pair_indices, validate_truncate_prompt_tokens
from ..ranking import rank
from ..types import ScoreResult
from .batcher import MicroBatcher
from .metrics import Metrics
from .protocol import (
    ModelCard,
    ModelList,
    MultiModalInput,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
    UsageInfo,
)

__all__ = [
    "ApiError", "ScoringService", "as_texts", "error_body", "resolve_options", "score_sides",
    "usage", "validation_message",
]

# The score spellings vLLM accepts, newest first (spec §1.2).
SPELLINGS = (("queries", "documents"), ("queries", "items"), ("data_1", "data_2"),
             ("text_1", "text_2"))


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
    """vLLM's error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": status}}


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
        check_text(item, where=f"{side}[{i}]")
    return list(items)


def resolve_options(body: Any, max_length: int, min_length: int = 1) -> tuple[bool, int | None]:
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
        tpt = validate_truncate_prompt_tokens(body.truncate_prompt_tokens, max_length, min_length)
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


# -- the service -----------------------------------------------------------------------------------
class ScoringService:
    """The routes' work over one loaded scorer: checks, the batched model call, the response.

    Args:
        scorer: the loaded model.
        served: the model name in responses and ``/v1/models``.
        batcher: the micro-batcher every scoring request goes through.
        metrics: where scored pairs and tokens are counted.
        max_documents: more documents in one request answer 413.
    """

    def __init__(self, scorer: Any, *, served: str, batcher: MicroBatcher, metrics: Metrics,
                 max_documents: int) -> None:
        self.scorer = scorer
        self.served = served
        self.batcher = batcher
        self.metrics = metrics
        self.max_documents = max_documents
        self.created = int(time.time())

    def check_limit(self, n: int, side: str) -> None:
        cap = self.max_documents
        if n > cap:
            raise ApiError(413, f"This request has {n} {side}, over the limit of {cap} per request "
                                "(--max-documents-per-request). Split it into smaller requests.",
                           type="PayloadTooLargeError", param=side)

    async def run(
        self, queries: list[str], documents: list[str], body: Any
    ) -> tuple[list[ScoreResult], int]:
        """Results in pair order, and the request's prompt tokens."""
        query_index = pair_indices(len(queries), len(documents))
        use_activation, tpt = resolve_options(
            body, self.scorer.max_length, getattr(self.scorer, "min_length", 1)
        )
        results = await self.batcher.submit(queries, documents, query_index,
                                            use_activation=use_activation,
                                            truncate_prompt_tokens=tpt)
        tokens = usage(results, query_index)
        self.metrics.add_scored(len(results), tokens)
        return results, tokens

    async def score(self, body: ScoreRequest, request_id: str) -> ScoreResponse:
        left, right = score_sides(body)
        queries = as_texts(getattr(body, left), side=left, model=self.served)
        documents = as_texts(getattr(body, right), side=right, model=self.served)
        self.check_limit(max(len(queries), len(documents)), right)
        results, tokens = await self.run(queries, documents, body)
        return ScoreResponse(
            id=f"score-{request_id}",
            created=int(time.time()),
            model=self.served,
            data=[ScoreData(index=r.index, score=r.score) for r in results],
            usage=UsageInfo(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def rerank(self, body: RerankRequest, request_id: str) -> RerankResponse:
        (query,) = as_texts(body.query, side="query", model=self.served)
        documents = as_texts(body.documents, side="documents", model=self.served)
        self.check_limit(len(documents), "documents")
        results, tokens = await self.run([query], documents, body)
        ranked = rank(results, documents, top_n=body.top_n or None)
        return RerankResponse(
            id=f"score-{request_id}",
            model=self.served,
            usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
            results=[RerankResult(index=r.index, document=RerankDocument(text=r.document),
                                  relevance_score=r.score) for r in ranked],
        )

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(
            id=self.served, created=self.created, root=str(self.scorer.model),
            max_model_len=self.scorer.max_length, score_type=self.scorer.score_type.value,
        )])
