"""OpenAI's ``/v1/embeddings`` for bi-encoder models, as vLLM and infinity serve it.

So an OpenAI client (``openai.OpenAI(base_url=...)``, LangChain's ``OpenAIEmbeddings``) embeds
with the same model that ``/score`` compares: the vectors are exactly those whose cosine the
bi-encoder scores (normalised when the checkpoint normalises). Over-long input is refused
unless ``truncate_prompt_tokens`` asks for a cut, as on the scoring routes.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..calls import VllmTokenization
from .protocol import UsageInfo
from .service import ApiError, ScoringService, check_truncation

__all__ = ["EMBEDDINGS_ROUTE", "EmbeddingData", "EmbeddingRequest", "EmbeddingResponse", "embed"]

EMBEDDINGS_ROUTE = "/v1/embeddings"


class EmbeddingRequest(BaseModel):
    """OpenAI's request, plus vLLM's ``truncate_prompt_tokens``."""

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    truncate_prompt_tokens: int | None = Field(None, ge=-1)
    truncation_side: Literal["left", "right"] | None = None
    request_id: str | None = None
    cache_salt: str | None = None


class EmbeddingData(BaseModel):
    index: int
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[EmbeddingData]
    usage: UsageInfo


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise ApiError(400, "input is empty; send a string or a list of strings.", param="input")
    if not all(isinstance(t, str) for t in texts):
        # Ours: vLLM embeds token ids too; this server reads text only (its tokenizer's ids
        # are not the client's to know).
        raise ApiError(400, "Token-id inputs are not supported by this server; send text.",
                       param="input")
    return texts


async def embed(service: ScoringService, body: EmbeddingRequest,
                request_id: str) -> EmbeddingResponse:
    """The vectors of ``body.input`` in order, on a worker thread under the model's lock."""
    service.check_request(body)
    if body.dimensions is not None:
        raise ApiError(400, f"Model \"{service.served}\" does not support matryoshka "
                            "representation, changing output dimensions will lead to poor "
                            "results.", param="dimensions")
    texts = _texts(body.input)
    service.check_limit(len(texts), "input")
    limit = service.max_model_len
    tpt = check_truncation(body.truncate_prompt_tokens, limit)
    # One text per input: no template and no pair caps, so only the truncation applies.
    params = VllmTokenization(max_model_len=limit, truncate=limit if tpt == -1 else tpt,
                              side=body.truncation_side if tpt is not None else None)
    scorer = service.scorer

    def run() -> tuple[Any, list[int]]:
        with scorer._lock:
            vectors, coverage = scorer._backend.embed(
                texts, limit=limit, overflow="error", vllm=params)
        return vectors, coverage.num_tokens

    vectors, tokens = await asyncio.to_thread(run)
    data = []
    for i, row in enumerate(vectors):
        if body.encoding_format == "base64":  # float32, little-endian, as OpenAI and vLLM
            value: list[float] | str = base64.b64encode(
                row.float().numpy().astype("<f4").tobytes()).decode()
        else:
            value = row.tolist()
        data.append(EmbeddingData(index=i, embedding=value))
    total = sum(tokens)
    service.metrics.add_scored(len(texts), total)
    return EmbeddingResponse(id=f"embd-{request_id}", created=int(time.time()),
                             model=service.served, data=data,
                             usage=UsageInfo(prompt_tokens=total, total_tokens=total))
