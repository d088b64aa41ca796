"""The engine side of the framework wrappers: Scorer.embed and engine.integrations."""

from __future__ import annotations

import copy
import logging
import random

import pytest

from engine import InputError, InputTooLongError, RerankResult, Scorer, UnsupportedScoreType
from engine.integrations import (
    ScorerSource,
    check_load_options,
    check_score_threshold,
    check_top_n,
    select,
)
from tests.conftest import DOCUMENTS


@pytest.fixture(scope="module")
def bi(st_bi_encoder):
    return Scorer.load(st_bi_encoder)


@pytest.fixture(scope="module")
def ce(bert_ce):
    return Scorer.load(bert_ce)


# -- Scorer.embed ---------------------------------------------------------------------------------
def test_embed_matches_sentence_transformers(st_bi_encoder, bi):
    from sentence_transformers import SentenceTransformer

    texts = [d for d in DOCUMENTS if d] + ["vitamin c and scurvy"]
    reference = SentenceTransformer(str(st_bi_encoder), device="cpu").encode(texts)
    got = bi.embed(texts)
    assert len(got) == len(texts)
    for row, ref in zip(got, reference, strict=True):
        assert row == pytest.approx(ref.tolist(), abs=1e-5)


def test_embed_keeps_input_order_and_gives_python_floats(bi):
    texts = list(DOCUMENTS)
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    straight = bi.embed(texts)
    shuffled = bi.embed([texts[i] for i in order])
    for pos, i in enumerate(order):
        assert shuffled[pos] == pytest.approx(straight[i], abs=1e-6)
    assert all(type(x) is float for row in straight for x in row)


def test_embed_vectors_are_the_ones_score_compares(bi):
    query = "vitamin c and scurvy"
    q, *docs = bi.embed([query, *DOCUMENTS])
    expected = [r.score for r in bi.score(query, DOCUMENTS)]

    def cosine(a, b):
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

    assert [cosine(q, d) for d in docs] == pytest.approx(expected, abs=1e-5)


def test_embed_refuses_a_cross_encoder(ce):
    with pytest.raises(UnsupportedScoreType, match="needs a bi-encoder"):
        ce.embed(["a text"])


def test_embed_empty_and_bad_items(bi):
    assert bi.embed([]) == []
    with pytest.raises(InputError, match=r"texts\[1\] is int"):
        bi.embed(["ok", 3])


def test_embed_overflow_is_flagged_or_refused(st_bi_encoder, caplog):
    long_text = "the quick brown fox jumps over the lazy dog " * 20
    cut = Scorer.load(st_bi_encoder, max_length=16)
    with caplog.at_level(logging.WARNING, logger="engine"):
        (vector,) = cut.embed([long_text])
    assert "1 of 1 texts were truncated" in caplog.text
    assert len(vector) > 0
    strict = Scorer.load(st_bi_encoder, max_length=16, overflow="error")
    with pytest.raises(InputTooLongError):
        strict.embed([long_text])


async def test_aembed_equals_embed(bi):
    assert await bi.aembed(DOCUMENTS) == bi.embed(DOCUMENTS)


# -- engine.integrations --------------------------------------------------------------------------
def _ranked(scores):
    return [
        RerankResult(index=i, score=s, document=f"d{i}")
        for i, s in sorted(enumerate(scores), key=lambda p: -p[1])
    ]


@pytest.mark.parametrize(
    ("top_n", "threshold", "expected"),
    [
        (None, None, [1, 3, 0, 2]),
        (2, None, [1, 3]),
        (None, 0.5, [1, 3]),  # the threshold is inclusive
        (1, 0.5, [1]),
        (3, 0.5, [1, 3]),
        (None, 0.95, []),
    ],
)
def test_select_applies_threshold_then_top_n(top_n, threshold, expected):
    ranked = _ranked([0.4, 0.9, 0.1, 0.5])
    assert [r.index for r in select(ranked, top_n=top_n, score_threshold=threshold)] == expected


def test_option_checks():
    assert check_top_n(None) is None and check_top_n(5) == 5
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(InputError, match="top_n"):
            check_top_n(bad)
    assert check_score_threshold(1) == 1.0
    for bad in (float("nan"), "0.5", True):
        with pytest.raises(InputError, match="score_threshold"):
            check_score_threshold(bad)
    with pytest.raises(InputError, match=r"Unknown load option\(s\) \['devcie'\]"):
        check_load_options({"devcie": "cpu"})
    with pytest.raises(InputError, match="batch_size"):
        check_load_options({"batch_size": 0})
    with pytest.raises(UnsupportedScoreType, match="Embeddings need a bi-encoder"):
        check_load_options({"score_type": "cross-encoder"}, need="embed")
    assert check_load_options({}, need="embed")["score_type"].value == "bi-encoder"


def test_source_is_lazy_and_empty_input_loads_nothing(tmp_path):
    source = ScorerSource(model=str(tmp_path / "missing"))
    assert not source.loaded
    assert source.rerank("q", [], top_n=3, score_threshold=None) == []
    assert source.score_pairs([]) == []
    assert not source.loaded
    from engine import ModelLoadError

    with pytest.raises(ModelLoadError):
        source.rerank("q", ["a doc"], top_n=3, score_threshold=None)


def test_source_refuses_ambiguous_or_unfit_scorers(ce):
    with pytest.raises(InputError, match="not both"):
        ScorerSource(scorer=ce, model="other")
    with pytest.raises(InputError, match="has no score, rerank, ascore, arerank"):
        ScorerSource(scorer=object())
    with pytest.raises(UnsupportedScoreType, match="Embeddings need a bi-encoder scorer"):
        ScorerSource(scorer=ce, need="embed")


def test_source_copies_share_the_model(ce):
    source = ScorerSource(scorer=ce)
    assert copy.deepcopy(source) is source and copy.copy(source) is source
    assert source.get() is ce and source.model_name == ce.model


def test_score_pairs_matches_engine_in_both_pairings(ce):
    docs = DOCUMENTS[:4]
    one_query = ScorerSource(scorer=ce).score_pairs([("q one", d) for d in docs])
    assert one_query == [r.score for r in ce.score("q one", docs)]
    queries = ["q one", "q two", "q one", "q three"]
    mixed = ScorerSource(scorer=ce).score_pairs(list(zip(queries, docs, strict=True)))
    assert mixed == [r.score for r in ce.score(queries, docs)]
    with pytest.raises(InputError, match=r"text_pairs\[1\]"):
        ScorerSource(scorer=ce).score_pairs([("q", "d"), ("q",)])
