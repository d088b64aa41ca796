"""vLLM's score and rerank request/response bodies as pydantic models (spec §1.2–1.5).

Requests allow unknown keys, as vLLM does (``extra="allow"``): clients that send
``encoding_format`` or ``return_documents`` keep working. Fields vLLM would honour but this
server can't are refused by the app with a 400 naming the field, never silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "ModelPermission",
    "MultiModalInput",
    "RerankDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "RerankUsage",
    "ScoreData",
    "ScoreRequest",
    "ScoreResponse",
    "UsageInfo",
]


class MultiModalInput(BaseModel):
    """vLLM's ``{"content": [parts]}`` input. Accepted by the schema, refused for text models."""

    content: list[dict[str, Any]]


# Runtime unions (pydantic reads them); `X | Y` on classes works from Python 3.10.
ScoreInput = str | MultiModalInput
ScoreInputs = ScoreInput | list[ScoreInput]


class _PoolingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description="served model name; not checked (vLLM 0.33)")
    user: str | None = None
    truncate_prompt_tokens: int | None = Field(
        None, ge=-1, description="keep N tokens of each model input; -1 = the model maximum")
    use_activation: bool | None = Field(
        None, description="false returns raw logits / unnormalised similarities")
    softmax: bool | None = Field(None, description="deprecated alias of use_activation")
    activation: bool | None = Field(None, description="deprecated alias of use_activation")
    raw_scores: bool | None = Field(
        None, description="TEI/Infinity spelling: true means use_activation=false")
    request_id: str | None = None
    priority: int = 0
    padding: Literal["max_length", "do_not_pad"] | None = None
    truncation_side: Literal["left", "right"] | None = None
    max_tokens_per_query: int = 0
    max_tokens_per_doc: int = 0
    instruction: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    mm_processor_kwargs: dict[str, Any] | None = None
    cache_salt: str | None = None


class ScoreRequest(_PoolingRequest):
    """``/score``: exactly one spelling of the two sides (queries/documents, queries/items,
    data_1/data_2, text_1/text_2)."""

    queries: ScoreInputs | None = None
    documents: ScoreInputs | None = None
    items: ScoreInputs | None = None
    data_1: ScoreInputs | None = None
    data_2: ScoreInputs | None = None
    text_1: ScoreInputs | None = None
    text_2: ScoreInputs | None = None


class RerankRequest(_PoolingRequest):
    """``/rerank``: one query, documents, and ``top_n`` (0 or absent = all)."""

    query: ScoreInput
    documents: ScoreInputs
    top_n: int = Field(0, ge=0)


class UsageInfo(BaseModel):
    """``/score`` usage (vLLM's UsageInfo): scoring reads prompts only."""

    prompt_tokens: int
    total_tokens: int
    completion_tokens: int | None = 0
    prompt_tokens_details: None = None
    completion_tokens_details: None = None


class ScoreData(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreResponse(BaseModel):
    """``/score`` answer: ``data`` in pair order (not sorted)."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: UsageInfo


class RerankDocument(BaseModel):
    text: str | None
    multi_modal: list[dict[str, Any]] | None = None


class RerankResult(BaseModel):
    index: int
    document: RerankDocument
    relevance_score: float


class RerankUsage(BaseModel):
    """``/rerank`` usage (vLLM's RerankUsage)."""

    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    """``/rerank`` answer: best first, ties in input order, cut to ``top_n``."""

    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult]


class ModelPermission(BaseModel):
    """OpenAI's (and vLLM's) model permission object."""

    id: str
    object: Literal["model_permission"] = "model_permission"
    created: int
    allow_create_engine: bool = False
    allow_sampling: bool = True
    allow_logprobs: bool = True
    allow_search_indices: bool = False
    allow_view: bool = True
    allow_fine_tuning: bool = False
    organization: str = "*"
    group: str | None = None
    is_blocking: bool = False


class ModelCard(BaseModel):
    """One served model in ``/v1/models`` (vLLM's shape)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vllm"
    root: str
    parent: str | None = None
    max_model_len: int
    permission: list[ModelPermission] = Field(default_factory=list)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class _ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    """vLLM's error body."""

    error: _ErrorInfo
