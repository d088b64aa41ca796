"""What ``Scorer`` and ``RemoteScorer`` share: the checks of a call's arguments, and rerank.

Nothing here does I/O or touches a model, as httpx's ``BaseClient`` serves ``Client`` and
``AsyncClient``: the two scorers differ only in how ``score`` / ``ascore`` reach the model, and
``rerank`` / ``arerank`` are written once, as score + :func:`engine.ranking.rank`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .media import ScoreContent, parse_score_items
from .pairing import as_text_list, pair_indices, validate_truncate_prompt_tokens
from .ranking import NonFinite, rank
from .types import RerankResult, ScoreResult

__all__ = [
    "ScoreCall", "ScorerBase", "VllmTokenization", "check_call", "check_use_activation",
    "rerank_documents",
]


@dataclass(frozen=True, kw_only=True)
class VllmTokenization:
    """How vLLM tokenizes a call, for its surfaces (``engine.LLM``, ``scorer serve``).

    ``Scorer``'s own API fits over-long input by cutting the document and flags it; vLLM instead
    refuses an input over ``max_model_len`` unless truncation is asked for, and then cuts the
    whole prompt from one side (its renderer's TokenizeParams). Also the per-call options only
    its surfaces have.

    Attributes:
        max_model_len: the limit; a longer prompt is refused with vLLM's message.
        truncate: keep this many tokens (``truncate_prompt_tokens``, -1 resolved), or None.
        side: "left" keeps the last tokens, "right" the first; None the tokenizer's default
            (and the tokenizer's own pair truncation).
        pad_to: pad each prompt with the pad token to this length (``padding="max_length"``).
        max_tokens_per_query / max_tokens_per_doc: cut the query / document TEXT to this many
            tokens before pairing (0: no cap).
        template: a score template for this call (jinja source or a bundled name), or None.
        template_kwargs: more template variables (``chat_template_kwargs``), sorted items.
        keep_token_ids: return the token ids each pair was scored from.
    """

    max_model_len: int
    truncate: int | None = None
    side: str | None = None
    pad_to: int | None = None
    max_tokens_per_query: int = 0
    max_tokens_per_doc: int = 0
    template: str | None = None
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    keep_token_ids: bool = False


@dataclass(frozen=True, kw_only=True)
class ScoreCall:
    """A call's arguments after the checks: pair k is (queries[query_index[k]], documents[k]).

    ``vllm``: tokenize as vLLM does (its surfaces); None for ``Scorer``'s own rules.
    """

    queries: list[str]
    documents: list[str]
    query_index: list[int]
    use_activation: bool | None
    truncate_prompt_tokens: int | None
    vllm: VllmTokenization | None = None

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
    max_length: int | None, min_length: int = 1, accepts_media: bool = False,
) -> ScoreCall:
    """Check a score call by vLLM's rules: texts, 1:1 / 1:N / N:N pairing, the two options.

    ``max_length``: the model's input limit, which resolves ``truncate_prompt_tokens=-1`` and
    bounds it; None where it is unknown (a remote server checks it itself). ``min_length``:
    the fewest tokens an input can be cut to. ``accepts_media``: the model reads
    ``{"content": [...]}`` items (engine.media) besides strings; otherwise such an item is
    refused with a message that says so.
    """
    q: list[Any] = _side(queries, "queries", accepts_media)
    d: list[Any] = _side(documents, "documents", accepts_media)
    query_index = pair_indices(len(q), len(d))
    tpt = validate_truncate_prompt_tokens(truncate_prompt_tokens, max_length, min_length)
    return ScoreCall(queries=q, documents=d, query_index=query_index,
                     use_activation=check_use_activation(use_activation),
                     truncate_prompt_tokens=tpt)


def _side(value: Any, side: str, accepts_media: bool) -> list[Any]:
    if accepts_media:
        return parse_score_items(value, side=side)
    return as_text_list(value, side=side)


def rerank_documents(query: Any, documents: Any, *, accepts_media: bool = False) -> list[Any]:
    """The one-query rule of rerank, and its documents as a list (strings, or for a model that
    reads images also :class:`engine.media.ScoreContent` items)."""
    one_item = isinstance(query, (str, ScoreContent)) or (
        accepts_media and isinstance(query, Mapping) and "content" in query
    )
    if not one_item:
        raise InputError(
            f"rerank takes one query string, got {type(query).__name__}; "
            "use score() to pair several queries with documents."
        )
    return _side(documents, "documents", accepts_media)


class ScorerBase(ABC):
    """The methods every scorer has, with rerank written once over score."""

    #: What rerank does with a NaN/±inf score: raise ("error") or rank it last ("last").
    non_finite: NonFinite = "error"
    #: Whether a query or document may be a ``{"content": [...]}`` item (a model that reads
    #: images); otherwise such items are refused with a message that says so.
    accepts_media: bool = False

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
        docs = rerank_documents(query, documents, accepts_media=self.accepts_media)
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
        docs = rerank_documents(query, documents, accepts_media=self.accepts_media)
        results = await self.ascore(query, docs, use_activation=use_activation,
                                    truncate_prompt_tokens=truncate_prompt_tokens)
        return rank(results, docs, top_n=top_n, non_finite=self.non_finite)
