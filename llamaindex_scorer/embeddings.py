"""``ScorerEmbedding``: a LlamaIndex embedding model backed by a bi-encoder scorer."""

from __future__ import annotations

from typing import ClassVar

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, model_validator

from engine.integrations import Need, SupportsEmbed

from ._base import ScorerFields

__all__ = ["ScorerEmbedding"]


class ScorerEmbedding(ScorerFields, BaseEmbedding):
    """Embeddings from a bi-encoder model, so an index and its reranker share one engine.

    The vectors are the ones the engine's bi-encoder cosine compares (normalised when the
    checkpoint says so), as Python floats. ``model=None`` (and no ``scorer``) is the bundled
    all-MiniLM-L6-v2. Queries and texts are embedded the same way.

    Example:
        >>> from llama_index.core import VectorStoreIndex
        >>> index = VectorStoreIndex(nodes, embed_model=ScorerEmbedding())  # doctest: +SKIP
    """

    _need: ClassVar[Need] = "embed"

    scorer: SupportsEmbed | None = Field(
        default=None,
        description="A ready bi-encoder scorer, shared as is; instead of model. Not serialised "
        "by to_dict().",
    )

    @classmethod
    def class_name(cls) -> str:
        return "ScorerEmbedding"

    @model_validator(mode="after")
    def _name_the_model(self) -> ScorerEmbedding:
        # BaseEmbedding.model_name is what LlamaIndex shows in events; say which model it is.
        if self.model_name == "unknown":
            self.model_name = self._scorer_source().model_name
        return self

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._scorer_source().embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._scorer_source().aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._scorer_source().embed([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._scorer_source().aembed([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._scorer_source().embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._scorer_source().aembed(texts)
