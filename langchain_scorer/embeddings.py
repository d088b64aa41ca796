"""``ScorerEmbeddings``: LangChain ``Embeddings`` backed by a bi-encoder scorer."""

from __future__ import annotations

from typing import ClassVar

from langchain_core.embeddings import Embeddings

from engine.errors import InputError
from engine.integrations import Need, SupportsEmbed, check_sequence

from ._base import ScorerFields

__all__ = ["ScorerEmbeddings"]


class ScorerEmbeddings(ScorerFields, Embeddings):
    """Embeddings from a bi-encoder model, so a vector store and its reranker share one engine.

    The vectors are the ones the engine's bi-encoder cosine compares (normalised when the
    checkpoint says so), as Python floats. ``model=None`` (and no ``scorer``) is the bundled
    all-MiniLM-L6-v2.

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> store = InMemoryVectorStore(embedding=ScorerEmbeddings())  # doctest: +SKIP
    """

    _need: ClassVar[Need] = "embed"

    scorer: SupportsEmbed | None = None
    """A ready bi-encoder scorer, shared as is; instead of ``model``."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order; [] for no texts, without loading the model."""
        return self._scorer_source().embed(_texts(texts))

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query text."""
        return self._scorer_source().embed([_query(text)])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` through the scorer's own async path."""
        return await self._scorer_source().aembed(_texts(texts))

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` through the scorer's own async path."""
        return (await self._scorer_source().aembed([_query(text)]))[0]


def _texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("embed_documents takes a list of strings; use embed_query for one text.")
    return check_sequence(texts, name="texts")


def _query(text: str) -> str:
    if not isinstance(text, str):
        raise InputError(f"embed_query takes one string, got {type(text).__name__}.")
    return text
