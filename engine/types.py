"""Plain result and option types. No torch import here: remote mode and the wrappers use them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import UnsupportedScoreType

__all__ = ["CacheInfo", "RerankResult", "ScoreResult", "ScoreType"]


class ScoreType(str, enum.Enum):
    """The three score types of vLLM's scoring API."""

    CROSS_ENCODER = "cross-encoder"
    LATE_INTERACTION = "late-interaction"
    BI_ENCODER = "bi-encoder"

    @classmethod
    def parse(cls, value: ScoreType | str) -> ScoreType:
        """Turn a user string into a ScoreType, listing the options when it isn't one."""
        if isinstance(value, ScoreType):
            return value
        normalized = str(value).strip().lower().replace("_", "-")
        for member in cls:
            if member.value == normalized:
                return member
        options = ", ".join(repr(m.value) for m in cls)
        raise UnsupportedScoreType(f"Unknown score_type {value!r}. Options are {options}.")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, kw_only=True, slots=True)
class ScoreResult:
    """The score of one (query, document) pair.

    Attributes:
        index: position of the pair (and of the document) in the caller's input.
        score: the score as a Python float.
        truncated: True if any input of this pair was cut to fit.
        num_tokens: tokens the model read for this pair (cross-encoder: the pair prompt;
            bi-encoder and late-interaction: query tokens + document tokens).
        query_tokens: bi-encoder and late-interaction: the query's share of ``num_tokens`` (the
            query is encoded once per call, not once per pair); None for a cross-encoder.
    """

    index: int
    score: float
    truncated: bool = False
    num_tokens: int = 0
    query_tokens: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RerankResult:
    """One document of a rerank, in ranked order.

    Attributes:
        index: position of the document in the caller's ``documents``.
        score: relevance score as a Python float (``relevance_score`` on the wire).
        document: the document text as given.
        truncated: True if the document (or the pair) was cut to fit.
        num_tokens: as in ScoreResult.
    """

    index: int
    score: float
    document: str
    truncated: bool = False
    num_tokens: int = 0

    @property
    def relevance_score(self) -> float:
        """Alias of ``score``, the name used by rerank APIs."""
        return self.score


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheInfo:
    """The document cache of a bi-encoder or late-interaction scorer (``doc_cache_size``).

    Attributes:
        hits: documents served from the cache since it was made (or cleared).
        misses: documents that went through the model instead.
        entries: documents held now.
        max_entries: the most it holds (``doc_cache_size``).
    """

    hits: int
    misses: int
    entries: int
    max_entries: int
