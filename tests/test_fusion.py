"""engine.fusion: reciprocal-rank fusion and the min-max blend, by property and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import engine
from engine import InputError, blend_scores, reciprocal_rank_fusion

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# Few distinct values, so ties (within a list and across documents) come up often.
coarse = st.integers(min_value=-3, max_value=3).map(float)


@st.composite
def aligned(draw: st.DrawFn, values: st.SearchStrategy[float] = finite,
            min_size: int = 0, lists: int = 2) -> list[list[float]]:
    n = draw(st.integers(min_value=min_size, max_value=12))
    return [draw(st.lists(values, min_size=n, max_size=n)) for _ in range(lists)]


def reference_rrf(lists: list[list[float]], k: float, weights: list[float]) -> list[float]:
    """The definition written out: rank = 1 + how many documents score strictly higher."""
    n = len(lists[0])
    return [
        sum(w / (k + 1 + sum(other > s[i] for other in s))
            for w, s in zip(weights, lists, strict=True))
        for i in range(n)
    ]


def order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


# -- reciprocal-rank fusion ----------------------------------------------------------------------
def test_rrf_by_hand() -> None:
    # BM25 ranks 1, 2, 3; model ranks 3, 1, 2.
    fused = reciprocal_rank_fusion([12.0, 9.5, 7.1], [0.2, 0.9, 0.85])
    assert fused == pytest.approx([1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62], abs=1e-15)
    assert order(fused) == [1, 0, 2]


def test_rrf_ties_share_the_best_rank() -> None:
    # Scores 5, 5, 1 → ranks 1, 1, 3 (competition ranking), not 1, 2, 3.
    assert reciprocal_rank_fusion([5.0, 5.0, 1.0], k=0) == [1.0, 1.0, 1 / 3]


@settings(max_examples=200, deadline=None)
@given(aligned(values=coarse, lists=3), st.floats(0, 100),
       st.lists(st.floats(0, 5), min_size=3, max_size=3).filter(lambda w: sum(w) > 0))
def test_rrf_matches_the_definition(lists: list[list[float]], k: float, weights: list[float]
                                    ) -> None:
    got = reciprocal_rank_fusion(*lists, k=k, weights=weights)
    assert got == pytest.approx(reference_rrf(lists, k, weights), rel=1e-12, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(aligned(values=coarse), st.randoms(use_true_random=False))
def test_rrf_is_permutation_equivariant(lists: list[list[float]], rnd) -> None:  # noqa: ANN001
    """Shuffling the documents shuffles the fused scores, bit for bit."""
    perm = list(range(len(lists[0])))
    rnd.shuffle(perm)
    fused = reciprocal_rank_fusion(*lists)
    shuffled = reciprocal_rank_fusion(*([s[p] for p in perm] for s in lists))
    assert shuffled == [fused[p] for p in perm]


@settings(max_examples=200, deadline=None)
@given(aligned(values=coarse))
def test_rrf_ties_stay_tied_and_in_input_order(lists: list[list[float]]) -> None:
    fused = reciprocal_rank_fusion(*lists)
    n = len(fused)
    for i in range(n):
        for j in range(i + 1, n):
            if all(s[i] == s[j] for s in lists):
                assert fused[i] == fused[j]  # bit-identical, so a stable sort keeps i before j
                ranked = order(fused)
                assert ranked.index(i) < ranked.index(j)


@settings(max_examples=200, deadline=None)
@given(aligned(min_size=1))
def test_rrf_reads_only_the_order(lists: list[list[float]]) -> None:
    """Any strictly increasing transform of a list leaves the fused scores unchanged."""
    first, second = lists
    squashed = [math.atan(x) for x in first]  # strictly increasing, but atan can merge
    assume(len(set(squashed)) == len(set(first)))  # neighbours in floating point
    assert reciprocal_rank_fusion(squashed, second) == reciprocal_rank_fusion(first, second)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=30), aligned(min_size=0, lists=1))
def test_input_order_as_the_first_stage(n: int, model: list[list[float]]) -> None:
    """range(n, 0, -1) is the input order as a ranking: same as any strictly falling scores."""
    (scores,) = model
    falling = [100.0 - 3.5 * i for i in range(len(scores))]
    assert reciprocal_rank_fusion(range(len(scores), 0, -1), scores) == reciprocal_rank_fusion(
        falling, scores
    )
    # One list alone keeps its own order.
    assert order(reciprocal_rank_fusion(range(n, 0, -1))) == list(range(n))


@settings(max_examples=200, deadline=None)
@given(aligned(values=coarse, min_size=2))
def test_rrf_a_document_better_everywhere_ranks_higher(lists: list[list[float]]) -> None:
    fused = reciprocal_rank_fusion(*lists)
    for i in range(len(fused)):
        for j in range(len(fused)):
            if all(s[i] > s[j] for s in lists):
                assert fused[i] > fused[j]


def test_rrf_weights_and_k() -> None:
    a, b = [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]
    # Weight 0 on a list: it is ignored.
    assert order(reciprocal_rank_fusion(a, b, weights=(0, 1))) == [2, 1, 0]
    # Scaling every weight scales the scores.
    assert reciprocal_rank_fusion(a, b, weights=(2, 2)) == pytest.approx(
        [2 * s for s in reciprocal_rank_fusion(a, b)])
    # Small k rewards one top rank, large k consistency: ranks (1, 4) win at k=0, the document
    # ranked (2, 2) wins at k=1000.
    first, model = [5.0, 4.0, 3.0, 2.0, 1.0], [2.0, 4.0, 1.0, 3.0, 5.0]
    assert order(reciprocal_rank_fusion(first, model, k=0))[0] == 0
    assert order(reciprocal_rank_fusion(first, model, k=1000))[0] == 1


# -- min-max blend -------------------------------------------------------------------------------
def test_blend_by_hand() -> None:
    assert blend_scores([12.0, 9.5, 7.0], [0.25, 0.75, 0.5]) == [0.5, 0.75, 0.25]
    assert blend_scores([12.0, 9.5, 7.0], [0.25, 0.75, 0.5], weights=(0, 1)) == [0.0, 1.0, 0.5]
    assert blend_scores([1.0, 3.0], [4.0, 2.0], weights=(3, 1)) == [0.25, 0.75]
    # A list with one value everywhere carries no order: every document gets 1.0 from it.
    assert blend_scores([7.0, 7.0, 7.0], [0.0, 1.0, 0.5]) == [0.5, 1.0, 0.75]
    assert blend_scores([4.2]) == [1.0]


@settings(max_examples=300, deadline=None)
@given(aligned(), st.lists(st.floats(0, 5), min_size=2, max_size=2).filter(lambda w: sum(w) > 0))
def test_blend_stays_in_unit_interval(lists: list[list[float]], weights: list[float]) -> None:
    """Any finite floats, even ±1e308 together, give finite results in [0, 1]."""
    fused = blend_scores(*lists, weights=weights)
    assert len(fused) == len(lists[0])
    assert all(0.0 <= f <= 1.0 for f in fused), fused


@settings(max_examples=200, deadline=None)
@given(aligned(values=st.floats(-1e6, 1e6)), st.floats(0.01, 100), st.floats(-1e3, 1e3))
def test_blend_ignores_each_lists_scale(lists: list[list[float]], scale: float, shift: float
                                        ) -> None:
    """Min-max undoes any positive affine map of a list (BM25 and cosine scales don't matter)."""
    first, second = lists
    moved = [scale * x + shift for x in first]
    assume(len(set(moved)) == len(set(first)))  # the map kept distinct values distinct
    assert blend_scores(moved, second) == pytest.approx(blend_scores(first, second), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(aligned(values=coarse), st.randoms(use_true_random=False))
def test_blend_is_permutation_equivariant_and_keeps_ties(lists: list[list[float]], rnd
                                                         ) -> None:  # noqa: ANN001
    perm = list(range(len(lists[0])))
    rnd.shuffle(perm)
    fused = blend_scores(*lists)
    assert blend_scores(*([s[p] for p in perm] for s in lists)) == [fused[p] for p in perm]
    for i in range(len(fused)):
        for j in range(i + 1, len(fused)):
            if all(s[i] == s[j] for s in lists):
                assert fused[i] == fused[j]


@settings(max_examples=200, deadline=None)
@given(aligned(values=st.floats(-1e6, 1e6), min_size=1, lists=1))
def test_one_list_alone_keeps_its_order(lists: list[list[float]]) -> None:
    (scores,) = lists
    assert order(reciprocal_rank_fusion(scores)) == order(scores)
    # Min-max can merge values closer than its rounding (0 and 1e-277 next to -1), never swap.
    blended = blend_scores(scores)
    for i in range(len(scores)):
        for j in range(len(scores)):
            if scores[i] > scores[j]:
                assert blended[i] >= blended[j]


# -- shared input rules --------------------------------------------------------------------------
@pytest.mark.parametrize("fuse", [reciprocal_rank_fusion, blend_scores])
def test_empty_and_numpy_input(fuse) -> None:  # noqa: ANN001
    assert fuse([], []) == []
    arrays = fuse(np.array([3, 1, 2], dtype=np.int64), np.array([0.1, 0.9, 0.5], dtype=np.float32))
    assert arrays == fuse([3, 1, 2], [0.1, 0.9, 0.5]) or arrays == pytest.approx(
        fuse([3, 1, 2], [float(np.float32(x)) for x in (0.1, 0.9, 0.5)]))
    assert all(type(x) is float for x in arrays)


@pytest.mark.parametrize("fuse", [reciprocal_rank_fusion, blend_scores])
@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "at least one score list"),
        (([1.0, 2.0], [1.0]), {}, "list 2 has 1 scores but list 1 has 2"),
        (([1.0, float("nan")], [1.0, 2.0]), {}, "nan at index 1"),
        (([1.0, 2.0], [float("inf"), 2.0]), {}, "inf at index 0"),
        (([1.0, True],), {}, "True at index 1"),
        ((["1.0", 2.0],), {}, "'1.0' at index 0"),
        ((None,), {}, "must be a sequence"),
        (("12",), {}, "must be a sequence"),
        (([1.0], [2.0]), {"weights": (1.0,)}, "1 weights for 2 score lists"),
        (([1.0], [2.0]), {"weights": (1.0, -1.0)}, "≥ 0"),
        (([1.0], [2.0]), {"weights": (0, 0)}, "At least one weight"),
        (([1.0], [2.0]), {"weights": (1.0, float("nan"))}, "finite"),
        (([1.0], [2.0]), {"weights": 0.5}, "sequence"),
    ],
)
def test_bad_input_is_an_input_error(fuse, args, kwargs, message) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        fuse(*args, **kwargs)


@pytest.mark.parametrize("k", [-1, float("nan"), float("inf"), True, "60"])
def test_bad_k(k) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match="k must be a finite number"):
        reciprocal_rank_fusion([1.0, 2.0], k=k)


def test_input_errors_are_value_errors_and_scorer_errors() -> None:
    with pytest.raises(ValueError):
        blend_scores([1.0], [1.0, 2.0])
    with pytest.raises(engine.ScorerError):
        reciprocal_rank_fusion([float("nan")])


def test_inputs_are_not_changed() -> None:
    first, model = [3.0, 1.0, 2.0], [0.1, 0.9, 0.5]
    reciprocal_rank_fusion(first, model)
    blend_scores(first, model)
    assert first == [3.0, 1.0, 2.0] and model == [0.1, 0.9, 0.5]


def test_docstring_examples() -> None:
    import doctest

    import engine.fusion

    result = doctest.testmod(engine.fusion)
    assert result.attempted >= 8 and result.failed == 0
