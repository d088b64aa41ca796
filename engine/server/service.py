"""What the server's routes do, without FastAPI: checks, the model call, the response models.

The pure helpers turn a parsed request into engine arguments (or an :class:`ApiError`); the
:class:`ScoringService` runs them through the micro-batcher and builds the ``protocol``
response models. ``engine.server.app`` only wires routes and errors to it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..calls import VllmTokenization
from ..media import ScoreContent, ScoreItem, parse_score_item
from ..pairing import check_text
from ..ranking import rank
from ..types import ScoreResult
from .batcher import MicroBatcher
from .metrics import Metrics
from .protocol import (
    ModelCard,
    ModelList,
    ModelPermission,
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
    "ApiError", "ScoringService", "as_items", "check_pairing", "check_truncation", "error_body",
    "resolve_use_activation", "score_sides", "tokenization", "usage", "validation_message",
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


def as_items(value: Any, *, side: str, architecture: str,
             accepts_media: bool = False) -> list[ScoreItem]:
    """A side of the request as score items, in vLLM's order of checks (``_validate_mm_score_
    input``): a ``{"content": [...]}`` part to a text model is refused with vLLM's message; a
    multimodal model parses it (malformed parts are a 400 naming ``side[i]``)."""
    items = value if isinstance(value, list) else [value]
    if not accepts_media:
        for item in items:
            if isinstance(item, MultiModalInput):
                raise ApiError(400, f"MultiModalParam is not supported for {architecture}")
    out: list[ScoreItem] = []
    for i, item in enumerate(items):
        where = f"{side}[{i}]"
        if isinstance(item, MultiModalInput):
            out.append(parse_score_item({"content": item.content}, where=where))
        else:
            out.append(check_text(item, where=where))
    return out


def rerank_document(item: ScoreItem) -> RerankDocument:
    """How vLLM echoes a document: ``{text, multi_modal: null}``, or for a ``{"content": [...]}``
    one ``{text: null, multi_modal: [parts]}``."""
    if isinstance(item, ScoreContent):
        return RerankDocument(text=None, multi_modal=item.content_parts())
    return RerankDocument(text=item)


def check_pairing(n_queries: int, n_documents: int) -> list[int]:
    """vLLM's pairing rule and texts, in its order (the length rule before the empty sides)."""
    if n_queries > 1 and n_queries != n_documents:
        raise ApiError(400, "Input lengths must be either 1:1, 1:N or N:N")
    if n_queries == 0:
        raise ApiError(400, "At least one text element must be given")
    if n_documents == 0:
        raise ApiError(400, "At least one text_pair element must be given")
    return [0] * n_documents if n_queries == 1 else list(range(n_documents))


def resolve_use_activation(body: Any) -> bool | None:
    """use_activation, its deprecated aliases, and TEI/Infinity's raw_scores."""
    use_activation = body.use_activation
    for alias in (body.softmax, body.activation):
        if use_activation is None:
            use_activation = alias
    if use_activation is None and body.raw_scores:
        use_activation = False  # TEI/Infinity clients ask for logits this way
    return use_activation  # type: ignore[no-any-return]


def check_truncation(tpt: int | None, max_model_len: int) -> int | None:
    """vLLM's refusal of a ``truncate_prompt_tokens`` over the model's limit."""
    if tpt is not None and tpt > max_model_len:
        raise ApiError(400, "truncate_prompt_tokens value is greater than max_model_len. Please "
                            "request a smaller truncation size.")
    return tpt


def tokenization(body: Any, max_model_len: int) -> VllmTokenization:
    """vLLM's tokenization of a request (its TokenizeParams and scoring token limits), or the
    400 it answers for a request that asks for the impossible."""
    tpt = check_truncation(body.truncate_prompt_tokens, max_model_len)
    caps = {}
    for name in ("max_tokens_per_query", "max_tokens_per_doc"):
        value = getattr(body, name)
        if value < 0:
            raise ApiError(400, f"{name} must be a non-negative integer")
        if value >= max_model_len and value != 0:
            raise ApiError(400, f"{name} ({value}) must be less than max_model_len "
                                f"({max_model_len}).")
        caps[name] = value
    kwargs = dict(body.chat_template_kwargs or {})
    if body.instruction is not None:
        kwargs.setdefault("instruction", body.instruction)  # vLLM: the kwargs win
    return VllmTokenization(
        max_model_len=max_model_len,
        truncate=max_model_len if tpt == -1 else tpt,
        side=body.truncation_side if tpt is not None else None,
        pad_to=max_model_len if body.padding == "max_length" else None,
        template_kwargs=tuple(sorted(kwargs.items())),
        **caps,
    )


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

    def check_limit(self, n: int, side: str) -> None:  # ours: vLLM has no such cap
        cap = self.max_documents
        if n > cap:
            raise ApiError(413, f"This request has {n} {side}, over the limit of {cap} per request "
                                "(--max-documents-per-request). Split it into smaller requests.",
                           type="PayloadTooLargeError", param=side)

    def check_request(self, body: Any) -> None:
        """What vLLM checks before it reads the inputs: the request's own fields, the model."""
        if body.cache_salt is not None and not body.cache_salt:
            raise ApiError(400, "Parameter 'cache_salt' must be a non-empty string if provided. "
                                "(parameter=cache_salt)", param="cache_salt")
        if body.model is not None and body.model != self.served and body.model not in self.adapters:
            raise ApiError(404, f"The model `{body.model}` does not exist.", type="NotFoundError")

    @property
    def adapters(self) -> dict[str, str]:
        """The LoRA adapters served beside the base (``--lora-modules``): name → folder."""
        listed = getattr(self.scorer._backend, "lora_adapters", None)
        return {a.name: a.path for a in listed()} if listed is not None else {}

    def adapter_of(self, body: Any) -> str | None:
        """The adapter a request's ``model`` names (vLLM serves each under its own name)."""
        return body.model if body.model is not None and body.model in self.adapters else None

    async def run(
        self, queries: Any, documents: Any, body: Any, *, sides: tuple[str, str]
    ) -> tuple[list[ScoreResult], list[ScoreItem], int]:
        """Results in pair order, the documents as parsed, and the request's prompt tokens
        (vLLM's order of checks)."""
        params = tokenization(body, self.max_model_len)
        floor = int(getattr(self.scorer, "min_length", 1))
        if params.truncate is not None and params.truncate < floor:
            # Ours: vLLM lets the tokenizer fail on it (a 500) or ignores it on short input.
            raise ApiError(400, f"truncate_prompt_tokens={params.truncate} is below {floor}, the "
                                "fewest tokens this model's inputs can be cut to (its special "
                                "tokens plus one token of text).", param="truncate_prompt_tokens")
        self.check_template_kwargs(dict(params.template_kwargs))
        architecture, media = self.architecture, bool(getattr(self.scorer, "accepts_media", False))
        q = as_items(queries, side=sides[0], architecture=architecture, accepts_media=media)
        d = as_items(documents, side=sides[1], architecture=architecture, accepts_media=media)
        query_index = check_pairing(len(q), len(d))
        self.check_limit(max(len(q), len(d)), sides[1])
        results = await self.batcher.submit(q, d, query_index,
                                            use_activation=resolve_use_activation(body),
                                            tokenization=params, lora=self.adapter_of(body))
        tokens = usage(results, query_index)
        self.metrics.add_scored(len(results), tokens)
        return results, d, tokens

    def check_template_kwargs(self, kwargs: dict[str, Any]) -> None:
        """vLLM's reserved-key refusal; then ours (stricter): template variables the served
        model's template never reads would be dropped silently, so they are refused."""
        reserved = {"chat_template", "tools", "tokenize"} & set(kwargs)
        if reserved:
            raise ApiError(400, "chat_template_kwargs contains reserved keys that conflict with "
                                f"fixed scorer arguments: {reserved}")
        if not kwargs:
            return
        reads = getattr(self.scorer, "template_variables", lambda: None)()
        unread = sorted(set(kwargs) - set(reads or ()))
        if unread:
            where = ("its score template does not read them" if reads is not None
                     else "it has no score template")
            raise ApiError(400, f"instruction/chat_template_kwargs {unread} would be ignored: "
                                f"{where} (start the server with --chat-template). Omit them.",
                           param="chat_template_kwargs")

    @property
    def max_model_len(self) -> int:
        return int(getattr(self.scorer, "max_model_len", self.scorer.max_length))

    @property
    def architecture(self) -> str:
        architectures = getattr(self.scorer, "architectures", ())
        return architectures[0] if architectures else str(self.scorer.model)

    async def score(self, body: ScoreRequest, request_id: str) -> ScoreResponse:
        self.check_request(body)
        left, right = score_sides(body)
        results, _, tokens = await self.run(getattr(body, left), getattr(body, right), body,
                                            sides=(left, right))
        return ScoreResponse(
            id=f"score-{request_id}",
            created=int(time.time()),
            model=self.adapter_of(body) or self.served,
            data=[ScoreData(index=r.index, score=r.score) for r in results],
            usage=UsageInfo(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def rerank(self, body: RerankRequest, request_id: str) -> RerankResponse:
        self.check_request(body)
        results, documents, tokens = await self.run(body.query, body.documents, body,
                                                    sides=("query", "documents"))
        ranked = rank(results, documents, top_n=body.top_n or None,
                      non_finite=getattr(self.scorer, "non_finite", "error"))
        return RerankResponse(
            id=f"score-{request_id}",
            model=self.adapter_of(body) or self.served,
            usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
            results=[RerankResult(index=r.index, document=rerank_document(documents[r.index]),
                                  relevance_score=r.score) for r in ranked],
        )

    def models(self) -> ModelList:
        """The base model, then each LoRA adapter with the base as its parent (vLLM's list)."""
        cards: list[tuple[str, str, str | None]] = [(self.served, str(self.scorer.model), None)]
        cards += [(name, path, self.served) for name, path in self.adapters.items()]
        return ModelList(data=[ModelCard(
            id=name, created=self.created, root=root, parent=parent,
            max_model_len=self.max_model_len,
            permission=[ModelPermission(id=f"modelperm-{uuid.uuid4().hex[:16]}",
                                        created=self.created)],
        ) for name, root, parent in cards])
