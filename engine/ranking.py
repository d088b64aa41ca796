"""Pure ranking: scores in pair order → ranked results (stable, highest first, top_n)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from .errors import InputError, NonFiniteScoreError
from .media import ScoreContent
from .types import RerankResult, ScoreResult

Document = str | ScoreContent

__all__ = ["NON_FINITE_POLICIES", "NonFinite", "check_finite", "rank"]

NonFinite = Literal["error", "last"]
NON_FINITE_POLICIES = ("error", "last")


def check_finite(
    results: Sequence[ScoreResult], *, policy: NonFinite = "error", model: str = "the model"
) -> None:
    """Raise NonFiniteScoreError when a score is NaN or ±inf and ``policy`` is "error".

    A NaN can't be ordered: sorting with one silently scrambles the ranking and top_n then
    drops better documents, so it is refused unless the caller opted into ranking them last.
    """
    if policy == "last":
        return
    bad = [r.index for r in results if not math.isfinite(r.score)]
    if bad:
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        values = sorted({repr(r.score) for r in results if not math.isfinite(r.score)})
        raise NonFiniteScoreError(
            f"{model} scored {len(bad)} of {len(results)} documents {'/'.join(values)} (indices "
            f"{shown}); a score that is not a finite number can't be ranked. The checkpoint's "
            "weights may hold NaN/inf (check it in transformers), or half precision overflowed "
            "(load with dtype='float32'). Load with non_finite='last' to rank such documents "
            "last instead.",
            indices=bad,
        )


def rank(
    results: Sequence[ScoreResult], documents: Sequence[Document], *, top_n: int | None = None,
    non_finite: NonFinite = "error",
) -> list[RerankResult]:
    """Sort by score, highest first; ties keep input order; cut to ``top_n``.

    ``top_n`` of None or 0 returns everything (vLLM's convention); a top_n larger than the
    number of documents returns everything too. A NaN or ±inf score raises
    NonFiniteScoreError, or with ``non_finite="last"`` ranks after every finite score (in
    input order among themselves).
    """
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0):
        raise InputError(f"top_n must be a non-negative int or None, got {top_n!r}.")
    if non_finite not in NON_FINITE_POLICIES:
        raise InputError(f"non_finite must be 'error' or 'last', got {non_finite!r}.")
    check_finite(results, policy=non_finite)
    # sorted() is stable, so equal scores stay in input order; the key is a total order.
    ordered = sorted(
        results, key=lambda r: (0, -r.score) if math.isfinite(r.score) else (1, 0.0)
    )
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
