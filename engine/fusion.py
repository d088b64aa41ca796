"""Hybrid ranking: fuse a first-stage ranking (BM25, a vector index) with model scores.

Two fusion rules, both pure Python, both over score lists that are *aligned*: every list scores
the same documents in the same (input) order, higher is better, and the result is one fused
score per document in that order, as :meth:`engine.Scorer.score` returns its scores. Sort it
with a stable sort (``sorted(range(n), key=lambda i: -fused[i])``) and ties keep input order;
documents tied in every list get bit-identical fused scores, so they stay tied.

- :func:`reciprocal_rank_fusion` reads only each list's order: Σ wⱼ / (k + rankⱼ). It needs no
  calibration, so it is the safe default when the scales differ (BM25 ≈ 0..30, cosine -1..1).
- :func:`blend_scores` min-max normalises each list to [0, 1] and takes the weighted mean. It
  keeps how far apart the scores are, which RRF throws away, at the price of trusting the scales.

When the input order *is* the first-stage ranking and no first-stage scores exist, pass
``range(n, 0, -1)`` (n for the first document, 1 for the last) as that list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from .errors import InputError
from .types import RerankResult

__all__ = ["HYBRIDS", "Fused", "Hybrid", "blend_scores", "fuse_ranked", "reciprocal_rank_fusion"]

Hybrid = Literal["rrf", "blend"]
HYBRIDS: tuple[Hybrid, ...] = ("rrf", "blend")


def reciprocal_rank_fusion(
    *score_lists: Sequence[float],
    k: float = 60.0,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """Reciprocal-rank fusion (Cormack et al., SIGIR 2009) of aligned score lists.

    ``fused[i] = Σⱼ weights[j] / (k + rankⱼ(i))`` where ``rankⱼ(i)`` is document i's 1-based
    rank in list j (highest score first). Equal scores share the best of their ranks
    (competition ranking, 1-2-2-4), so a tie in a list never favours one document over the other.

    Args:
        *score_lists: one or more lists of scores, one score per document, all in the same
            document order; higher is better. Only the order within each list matters.
        k: the smoothing constant, ≥ 0; larger k flattens the gap between top and lower ranks.
            60 is the paper's value and the usual default.
        weights: one non-negative weight per list (default: all 1.0), not all zero.

    Returns:
        One fused score per document, in input order.

    Raises:
        InputError: no lists, lists of different lengths, a score that is not a finite real
            number (NaN, inf, a string, a bool), or a bad ``k`` / ``weights``.

    Example:
        >>> bm25 = [12.0, 9.5, 7.1]          # documents in BM25 order
        >>> model = [0.20, 0.90, 0.85]       # the model's scores for the same documents
        >>> fused = reciprocal_rank_fusion(bm25, model)
        >>> [round(s, 4) for s in fused]
        [0.0323, 0.0325, 0.032]
        >>> sorted(range(3), key=lambda i: -fused[i])   # best first, ties in input order
        [1, 0, 2]
        >>> reciprocal_rank_fusion(range(3, 0, -1), model) == fused   # BM25 order, no scores
        True
    """
    lists = _check_lists(score_lists)
    if not _finite_real(k) or k < 0:
        raise InputError(f"k must be a finite number ≥ 0, got {k!r}.")
    w = _check_weights(weights, len(lists))
    n = len(lists[0])
    fused = [0.0] * n
    for weight, scores in zip(w, lists, strict=True):
        for i, rank in enumerate(_competition_ranks(scores)):
            fused[i] += weight / (k + rank)
    return fused


def blend_scores(
    *score_lists: Sequence[float],
    weights: Sequence[float] | None = None,
) -> list[float]:
    """Weighted mean of min-max normalised, aligned score lists; every result is in [0, 1].

    Each list is mapped to [0, 1] by ``(s - min) / (max - min)`` over its own documents (a list
    whose scores are all equal maps to 1.0, as OpenSearch's min-max does), then
    ``fused[i] = Σⱼ wⱼ · normⱼ(i) / Σⱼ wⱼ``.

    Why min-max rather than z-score: the result stays on a fixed [0, 1] scale whatever the
    number of candidates, so a weight reads as a share and a score threshold keeps its meaning;
    z-scores are unbounded and unstable on the short, skewed candidate lists a reranker sees (a
    handful of documents, one clear winner). Min-max is also what Elasticsearch / OpenSearch
    hybrid search and Weaviate's relative-score fusion use by default.

    Args:
        *score_lists: one or more lists of scores, one per document, in the same document order.
        weights: one non-negative weight per list (default: equal), not all zero; e.g.
            ``weights=(0.3, 0.7)`` gives the second list (the model) 70 % of the blend.

    Returns:
        One blended score per document, in input order.

    Raises:
        InputError: as :func:`reciprocal_rank_fusion`.

    Example:
        >>> bm25 = [12.0, 9.5, 7.0]          # min-max: 1.0, 0.5, 0.0
        >>> model = [0.25, 0.75, 0.5]        # min-max: 0.0, 1.0, 0.5
        >>> blend_scores(bm25, model)
        [0.5, 0.75, 0.25]
        >>> blend_scores(bm25, model, weights=(0.0, 1.0))  # the model alone, rescaled
        [0.0, 1.0, 0.5]
    """
    lists = _check_lists(score_lists)
    w = _check_weights(weights, len(lists))
    total = math.fsum(w)
    columns = [_min_max(scores) for scores in lists]
    # fsum is exactly rounded, so Σ wⱼ·vⱼ ≤ Σ wⱼ holds after rounding too: results stay ≤ 1.
    return [math.fsum(wj * col[i] for wj, col in zip(w, columns, strict=True)) / total
            for i in range(len(lists[0]))]


@dataclass(frozen=True, slots=True)
class Fused:
    """One document of a hybrid ranking: its input index, fused score and the model's own."""

    index: int
    score: float
    model_score: float


def fuse_ranked(
    ranked: Sequence[RerankResult], first_stage: Sequence[float] | None, *, method: Hybrid,
    model_weight: float = 0.5, rrf_k: float = 60.0, top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[Fused]:
    """The wrappers' hybrid: a model rerank of *every* document fused with the first stage.

    ``ranked``: the model's results for all n documents (any order; ``index`` places them).
    ``first_stage``: the first stage's scores in input order, or None when only its order is
    known: then the input order is the first-stage ranking (``range(n, 0, -1)``).
    ``model_weight`` is the model's share (the first stage gets the rest). The fused list is
    sorted best first (ties in input order), then ``score_threshold`` (on the fused scale) and
    ``top_n`` cut it.
    """
    if method not in HYBRIDS:
        raise InputError(f"hybrid must be 'rrf' or 'blend' (or None), got {method!r}.")
    if not _finite_real(model_weight) or not 0.0 <= model_weight <= 1.0:
        raise InputError(f"hybrid_weight must be a number in [0, 1], got {model_weight!r}.")
    n = len(ranked)
    if n == 0:
        return []
    model = [0.0] * n
    for r in ranked:
        model[r.index] = r.score
    first = list(first_stage) if first_stage is not None else [float(n - i) for i in range(n)]
    weights = (1.0 - model_weight, model_weight)
    fused = (reciprocal_rank_fusion(first, model, k=rrf_k, weights=weights) if method == "rrf"
             else blend_scores(first, model, weights=weights))
    order = sorted(range(n), key=lambda i: -fused[i])  # stable: ties keep input order
    kept = [Fused(i, fused[i], model[i]) for i in order
            if score_threshold is None or fused[i] >= score_threshold]
    return kept if top_n is None else kept[:top_n]


# -- helpers -------------------------------------------------------------------------------------
def _finite_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_lists(score_lists: tuple[Sequence[float], ...]) -> list[list[float]]:
    if not score_lists:
        raise InputError(
            "Give at least one score list, e.g. fuse(first_stage_scores, model_scores)."
        )
    lists: list[list[float]] = []
    for j, scores in enumerate(score_lists, start=1):
        if isinstance(scores, (str, bytes)) or not hasattr(scores, "__iter__"):
            raise InputError(
                f"Score list {j} must be a sequence of numbers, got {type(scores).__name__}."
            )
        values = list(scores)
        for i, value in enumerate(values):
            if not _finite_real(value):
                raise InputError(
                    f"Score list {j} has {value!r} at index {i}; scores must be finite real "
                    "numbers (no NaN, inf, bool or str). Drop or fix that document first."
                )
        lists.append([float(v) for v in values])
    n = len(lists[0])
    for j, values in enumerate(lists[1:], start=2):
        if len(values) != n:
            raise InputError(
                f"Score list {j} has {len(values)} scores but list 1 has {n}; every list must "
                "score the same documents, in the same order."
            )
    return lists


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
        raise InputError(f"weights must be a sequence of numbers, got {weights!r:.80}.")
    values = list(weights)
    if len(values) != count:
        raise InputError(
            f"Got {len(values)} weights for {count} score lists; give one weight per list."
        )
    if not all(_finite_real(v) and v >= 0 for v in values):
        raise InputError(f"weights must be finite numbers ≥ 0, got {values!r:.80}.")
    if not any(v > 0 for v in values):
        raise InputError("At least one weight must be > 0; all-zero weights fuse nothing.")
    return [float(v) for v in values]


def _competition_ranks(scores: Sequence[float]) -> list[int]:
    """1-based ranks, highest score first; equal scores share the best rank (1-2-2-4)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranks = [0] * len(scores)
    for position, i in enumerate(order, start=1):
        previous = order[position - 2] if position > 1 else None
        if previous is not None and scores[previous] == scores[i]:
            ranks[i] = ranks[previous]
        else:
            ranks[i] = position
    return ranks


def _min_max(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    span = high - low
    if math.isinf(span):  # e.g. -1e308 .. 1e308: halve first so the difference stays finite
        half = high / 2 - low / 2
        return [(s / 2 - low / 2) / half for s in scores]
    return [(s - low) / span for s in scores]
