"""Pure ranking: scores in pair order → ranked results (stable, highest first, top_n)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InputError
from .types import RerankResult, ScoreResult

__all__ = ["rank"]


def rank(
    results: Sequence[ScoreResult], documents: Sequence[str], *, top_n: int | None = None
) -> list[RerankResult]:
    """Sort by score, highest first; ties keep input order; cut to ``top_n``.

    ``top_n`` of None or 0 returns everything (vLLM's convention); a top_n larger than the
    number of documents returns everything too.
    """
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0):
        raise InputError(f"top_n must be a non-negative int or None, got {top_n!r}.")
    # sorted() is stable, so equal scores stay in input order.
    ordered = sorted(results, key=lambda r: -r.score)
    if top_n:
        ordered = ordered[:top_n]
    return [
        RerankResult(
            index=r.index,
            score=r.score,
            document=documents[r.index],
            truncated=r.truncated,
            num_tokens=r.num_tokens,
        )
        for r in ordered
    ]
