"""What ``Scorer`` and ``RemoteScorer`` share: the checks of a call's arguments, and rerank.

Nothing here does I/O or touches a model, as httpx's ``BaseClient`` serves ``Client`` and
``AsyncClient``: the two scorers differ only in how ``score`` / ``ascore`` reach the model, and
``rerank`` / ``arerank`` are written once, as score + :func:`engine.ranking.rank`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .pairing import as_text_list, pair_indices, validate_truncate_prompt_tokens
from .ranking import NonFinite, rank
from .types import RerankResult, ScoreResult

__all__ = ["ScoreCall", "ScorerBase", "check_call", "check_use_activation", "rerank_documents"]


@dataclass(frozen=True, kw_only=True)
class ScoreCall:
    """A call's arguments after the checks: pair k is (queries[query_index[k]], documents[k])."""

    queries: list[str]
    documents: list[str]
    query_index: list[int]
    use_activation: bool | None
    truncate_prompt_tokens: int | None

    @property
    def activation(self) -> bool:
        """Whether the model's activation applies (``use_activation`` None or True)."""
        return self.use_activation is not False


def check_use_activation(value: Any) -> bool | None:
    """``use_activation``: True, False or None (the model's default)."""
    if value is not None and not isinstance(value, bool):
        raise InputError(f"use_activation must be True, False or None, got {value!r}.")
    return value


def check_call(
    queries: Any, documents: Any, *, use_activation: Any, truncate_prompt_tokens: Any,
    max_length: int | None, min_length: int = 1,
) -> ScoreCall:
    """Check a score call by vLLM's rules: texts, 1:1 / 1:N / N:N pairing, the two options.

    ``max_length``: the model's input limit, which resolves ``truncate_prompt_tokens=-1`` and
    bounds it; None where it is unknown (a remote server checks it itself). ``min_length``:
    the fewest tokens an input can be cut to.
    """
    q = as_text_list(queries, side="queries")
    d = as_text_list(documents, side="documents")
    query_index = pair_indices(len(q), len(d))
    tpt = validate_truncate_prompt_tokens(truncate_prompt_tokens, max_length, min_length)
    return ScoreCall(queries=q, documents=d, query_index=query_index,
                     use_activation=check_use_activation(use_activation),
                     truncate_prompt_tokens=tpt)


def rerank_documents(query: Any, documents: Any) -> list[str]:
    """The one-query rule of rerank, and its documents as a list of strings."""
    if not isinstance(query, str):
        raise InputError(
            f"rerank takes one query string, got {type(query).__name__}; "
            "use score() to pair several queries with documents."
        )
    return as_text_list(documents, side="documents")


class ScorerBase(ABC):
    """The methods every scorer has, with rerank written once over score."""

    #: What rerank does with a NaN/±inf score: raise ("error") or rank it last ("last").
    non_finite: NonFinite = "error"

    @abstractmethod
    def score(
        self, queries: str | Sequence[str], documents: str | Sequence[str], *,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
        progress: Any = None,
    ) -> list[ScoreResult]: ...

    @abstractmethod
    async def ascore(
        self, queries: str | Sequence[str], documents: str | Sequence[str], *,
        use_activation: bool | None = None, truncate_prompt_tokens: int | None = None,
    ) -> list[ScoreResult]: ...

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Ties keep input order; ``top_n`` None or 0 returns all. Every document is scored and
        ranking and ``top_n`` are applied here, so the result is the same whatever a server
        sorts or caps. Each result carries the document's input ``index``, its ``score`` and
        the ``document`` text.
        """
        docs = rerank_documents(query, documents)
        results = self.score(query, docs, use_activation=use_activation,
                             truncate_prompt_tokens=truncate_prompt_tokens)
        return rank(results, docs, top_n=top_n, non_finite=self.non_finite)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        use_activation: bool | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`."""
        docs = rerank_documents(query, documents)
        results = await self.ascore(query, docs, use_activation=use_activation,
                                    truncate_prompt_tokens=truncate_prompt_tokens)
        return rank(results, docs, top_n=top_n, non_finite=self.non_finite)
