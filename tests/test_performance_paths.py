"""The fast paths: packed (padding-free) forward, long-call windows, document cache, bfloat16.

Correctness only: nothing here is timed (bench/ measures speed). The packed forward is checked
against the stock transformers forward in float64, where both are exact enough that any real
difference (positions, token types, masks, the [CLS]-only last layer, filler rows) would show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine.local.batching as batching
import engine.local.packed as packed
from engine import Scorer
from engine.errors import InputError, InputTooLongError
from engine.local.batching import (
    plan_batches,
    release_after_each_batch,
    release_freed_memory,
    windows,
)
from engine.local.doc_cache import CachedEncoding, EncodingCache
from engine.local.packed import build_packed_classifier, build_packed_encoder, pack, unpack
from tests.conftest import DOCUMENTS, QUERIES

# Enough distinct documents of varied length to fill several batches.
MANY_DOCS = [f"{d} {i} " + "word " * (i % 7) for i, d in enumerate(DOCUMENTS * 8)]


@pytest.fixture
def packed_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every call through the packed forward, however small."""
    monkeypatch.setattr(packed, "PACKED_MIN_TOKENS", 1)


@pytest.fixture
def packed_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed, "PACKED_MIN_TOKENS", 10**9)


def _scores(scorer: Scorer, queries: object, docs: list[str], **kw: object) -> list[float]:
    return [r.score for r in scorer.score(queries, docs, **kw)]  # type: ignore[arg-type]


# -- packed forward: exact maths --------------------------------------------------------------
@pytest.mark.parametrize("family", ["bert_ce", "roberta_ce", "xlmr_ce"])
def test_packed_classifier_matches_stock_forward_in_float64(
    family: str, request: pytest.FixtureRequest
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = request.getfixturevalue(family)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), dtype=torch.float64
    ).eval()
    built = build_packed_classifier(model, torch.device("cpu"))
    assert built is not None
    encoder, head = built
    queries = [QUERIES[i % 2] for i in range(len(DOCUMENTS))]
    enc = tok(queries, DOCUMENTS)
    with torch.no_grad():
        ours = head(encoder(pack(enc["input_ids"], enc.get("token_type_ids")), cls_only=True))
        # The reference runs each pair alone: no padding at all.
        ref = torch.stack([
            model(**tok([q], [d], return_tensors="pt")).logits[0]
            for q, d in zip(queries, DOCUMENTS, strict=True)
        ])
    assert ref[:, 0].std() > 0.1  # scores differ, so agreement means something
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)


def test_packed_encoder_hidden_states_match_stock_forward_in_float64(bert_encoder: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_encoder))
    model = AutoModel.from_pretrained(str(bert_encoder), dtype=torch.float64).eval()
    encoder = build_packed_encoder(model, torch.device("cpu"))
    assert encoder is not None
    ids = tok(DOCUMENTS)["input_ids"]
    with torch.no_grad():
        hidden, mask = unpack(encoder(pack(ids)), [len(s) for s in ids])  # [B, L, H], [B, L]
        for row, seq in enumerate(ids):
            ref = model(input_ids=torch.tensor([seq])).last_hidden_state[0]  # [L, H]
            assert torch.allclose(hidden[row, : len(seq)], ref, atol=1e-10, rtol=0)
            assert mask[row].sum() == len(seq)
            assert not hidden[row, len(seq) :].any()  # padding is zeros, never stale values


def test_unsupported_encoders_keep_the_stock_forward() -> None:
    from transformers import BertConfig, BertModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=37, vocab_size=99)
    relative = BertModel(BertConfig(position_embedding_type="relative_key", **small))
    assert build_packed_encoder(relative, torch.device("cpu")) is None
    plain = BertModel(BertConfig(**small))
    assert build_packed_encoder(plain, torch.device("mps")) is None  # CPU and CUDA only
    assert build_packed_encoder(plain, torch.device("cpu")) is not None
    assert build_packed_encoder(torch.nn.Linear(2, 2), torch.device("cpu")) is None


# -- packed forward through Scorer: same scores as the stock forward --------------------------
def _both_paths(monkeypatch: pytest.MonkeyPatch, load: dict, query: object,
                docs: list[str], **kw: object) -> tuple[list[float], list[float]]:
    scorer = Scorer.load(**load)
    monkeypatch.setattr(packed, "PACKED_MIN_TOKENS", 10**9)
    stock = scorer.score(query, docs, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(packed, "PACKED_MIN_TOKENS", 1)
    fast = scorer.score(query, docs, **kw)  # type: ignore[arg-type]
    assert [(r.index, r.truncated, r.num_tokens) for r in stock] == [
        (r.index, r.truncated, r.num_tokens) for r in fast
    ]
    return [r.score for r in stock], [r.score for r in fast]


def test_cross_encoder_packed_scores_equal_stock(
    bert_ce: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stock, fast = _both_paths(monkeypatch, {"model": bert_ce}, QUERIES[0], MANY_DOCS)
    assert max(abs(a - b) for a, b in zip(stock, fast, strict=True)) <= 1e-5
    stock, fast = _both_paths(monkeypatch, {"model": bert_ce}, QUERIES[0], MANY_DOCS,
                              use_activation=False)
    assert max(abs(a - b) for a, b in zip(stock, fast, strict=True)) <= 1e-5


def test_truncation_is_reported_the_same_on_the_packed_path(
    bert_ce: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = ["a short one", "word " * 60, "another short document", "token " * 90]
    stock, fast = _both_paths(monkeypatch, {"model": bert_ce, "max_length": 24}, QUERIES[1], docs)
    assert max(abs(a - b) for a, b in zip(stock, fast, strict=True)) <= 1e-5
    results = Scorer.load(bert_ce, max_length=24).score(QUERIES[1], docs)
    assert [r.truncated for r in results] == [False, True, False, True]
    assert all(r.num_tokens <= 24 for r in results)


@pytest.mark.parametrize("family", ["st_bi_encoder", "colbert_ir"])
def test_encoder_packed_scores_equal_stock(
    family: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = request.getfixturevalue(family)
    queries = [QUERIES[i % 2] for i in range(len(MANY_DOCS))]
    stock, fast = _both_paths(monkeypatch, {"model": path}, queries, MANY_DOCS)
    assert max(abs(a - b) for a, b in zip(stock, fast, strict=True)) <= 1e-5 * max(
        1.0, max(abs(s) for s in stock)
    )


# -- batching and windows ----------------------------------------------------------------------
def test_packed_plan_counts_real_tokens_and_keeps_every_index_once() -> None:
    lengths = [5, 90, 12, 40, 40, 3, 77, 1, 60]
    for padded in (True, False):
        plan = plan_batches(lengths, max_batch_size=4, max_tokens_per_batch=100, padded=padded)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        for batch in plan:
            assert len(batch) <= 4
            cost = len(batch) * lengths[batch[0]] if padded else sum(lengths[i] for i in batch)
            assert cost <= 100 or len(batch) == 1
            assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    # Without padding, short sequences share a batch a padded plan would have to split.
    assert len(plan_batches(lengths, max_batch_size=9, max_tokens_per_batch=200,
                            padded=False)) < len(
        plan_batches(lengths, max_batch_size=9, max_tokens_per_batch=200, padded=True))


def test_windows_cover_the_range_in_order() -> None:
    assert list(windows(7, 3)) == [(0, 3), (3, 6), (6, 7)]
    assert list(windows(0, 3)) == []
    release_freed_memory()  # a no-op where glibc is absent; must never raise


def test_long_calls_release_memory_from_their_first_batch() -> None:
    assert not release_after_each_batch(100, 5)  # a 100-passage rerank: no cost
    assert release_after_each_batch(100, batching.TRIM_AFTER)
    assert release_after_each_batch(batching.WINDOW + 1, 1)  # more windows follow


@pytest.mark.parametrize(
    ("family", "module"),
    [("bert_ce", "runner"), ("st_bi_encoder", "runner"), ("colbert_ir", "runner"),
     ("qwen3_llm_reranker", "runner")],
)
def test_a_long_call_hands_memory_back_after_every_batch(
    family: str, module: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    scorer = Scorer.load(request.getfixturevalue(family), batch_size=2)
    released: list[int] = []
    target = importlib.import_module(f"engine.local.{module}")
    monkeypatch.setattr(target, "release_freed_memory", lambda: released.append(1))
    scorer.score(QUERIES[0], MANY_DOCS[:3])  # two batches: short, nothing released
    assert released == []
    monkeypatch.setattr(batching, "WINDOW", 7)
    scorer.score(QUERIES[0], MANY_DOCS)  # longer than a window
    windows_ = -(-len(MANY_DOCS) // 7)
    batches = sum(-(-min(7, len(MANY_DOCS) - lo) // 2) for lo in range(0, len(MANY_DOCS), 7))
    # After every batch, and once per window after tokenizing it.
    assert len(released) == batches + windows_


def test_late_interaction_releases_memory_only_after_batches_the_model_ran(
    colbert_ir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.local.runner as runner

    scorer = Scorer.load(colbert_ir, batch_size=2, doc_cache_size=1000)
    released: list[int] = []
    monkeypatch.setattr(runner, "release_freed_memory", lambda: released.append(1))
    monkeypatch.setattr(batching, "WINDOW", 7)
    scorer.score(QUERIES[0], MANY_DOCS)  # nothing cached yet: every batch runs the model
    windows_ = -(-len(MANY_DOCS) // 7)
    batches = sum(-(-min(7, len(MANY_DOCS) - lo) // 2) for lo in range(0, len(MANY_DOCS), 7))
    assert len(released) == batches + windows_
    released.clear()
    scorer.score(QUERIES[0], MANY_DOCS)  # all from the cache: no model, nothing to release
    assert released == []


@pytest.mark.parametrize("family", ["bert_ce", "st_bi_encoder", "colbert_ir", "qwen3_llm_reranker"])
def test_a_call_longer_than_a_window_scores_like_short_calls(
    family: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = request.getfixturevalue(family)
    scorer = Scorer.load(path)
    whole_by_parts = []
    for start in range(0, len(MANY_DOCS), 10):
        whole_by_parts += _scores(scorer, QUERIES[0], MANY_DOCS[start : start + 10])
    monkeypatch.setattr(batching, "WINDOW", 7)  # many windows, and windows ≠ the parts above
    results = scorer.score(QUERIES[0], MANY_DOCS)
    assert [r.index for r in results] == list(range(len(MANY_DOCS)))
    got = [r.score for r in results]
    scale = max(1.0, max(abs(s) for s in got))
    assert max(abs(a - b) for a, b in zip(got, whole_by_parts, strict=True)) <= 1e-5 * scale


@pytest.mark.parametrize(
    ("family", "limit"),
    [("bert_ce", 32), ("st_bi_encoder", 32), ("colbert_ir", 32), ("qwen3_llm_reranker", 160)],
)
def test_overflow_error_names_the_callers_index_across_windows(
    family: str, limit: int, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = request.getfixturevalue(family)
    monkeypatch.setattr(batching, "WINDOW", 4)
    docs = [f"short {i}" for i in range(10)]
    docs[9] = "long " * 200
    scorer = Scorer.load(path, max_length=limit, overflow="error")
    with pytest.raises(InputTooLongError, match=r"\b9 is \d+ tokens"):
        scorer.score(QUERIES[0], docs)


# -- document cache ----------------------------------------------------------------------------
def _entry(n: int) -> CachedEncoding:
    return CachedEncoding(value=torch.full((2,), float(n)), mask=None, truncated=False,
                          num_tokens=n)


def test_encoding_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = EncodingCache(2)
    cache.put("a", _entry(1))
    cache.put("b", _entry(2))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("c", _entry(3))
    assert len(cache) == 2
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.get("b") is None
    assert (cache.hits, cache.misses) == (1, 1)
    cache.put("a", _entry(9))  # replacing keeps the size
    assert len(cache) == 2 and cache.get("a").num_tokens == 9  # type: ignore[union-attr]
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        EncodingCache(0)


@pytest.mark.parametrize("size", [-1, True, 1.5, "10"])
def test_doc_cache_size_is_validated(bert_encoder: Path, size: object) -> None:
    with pytest.raises(InputError, match="doc_cache_size"):
        Scorer.load(bert_encoder, score_type="bi-encoder", doc_cache_size=size)


def test_cache_is_off_by_default(st_bi_encoder: Path) -> None:
    assert Scorer.load(st_bi_encoder).cache_info() is None


@pytest.mark.parametrize(
    ("family", "options"),
    [("st_bi_encoder", {}), ("colbert_ir", {}), ("pylate", {"colbert_markers": True})],
)
def test_cache_hit_returns_identical_scores(
    family: str, options: dict, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(family)
    plain = Scorer.load(path, **options)
    cached = Scorer.load(path, doc_cache_size=100, **options)
    docs = MANY_DOCS[:20] + MANY_DOCS[:3]  # repeats inside one call, too
    reference = plain.score(QUERIES[0], docs)
    cold = cached.score(QUERIES[0], docs)
    info = cached.cache_info()
    assert info is not None and info.entries == 20 and info.hits == 0
    warm = cached.score(QUERIES[0], docs)
    info = cached.cache_info()
    assert info is not None and info.hits == 20  # nothing went through the model this time
    assert [r.score for r in warm] == [r.score for r in cold]  # bit-identical
    for a, b in zip(reference, warm, strict=True):
        assert (a.index, a.truncated, a.num_tokens) == (b.index, b.truncated, b.num_tokens)
        assert abs(a.score - b.score) <= 1e-6 * max(1.0, abs(a.score))
    # Another query over the same documents: the cache serves them, scores still right.
    other = [r.score for r in cached.score(QUERIES[1], docs)]
    expected = [r.score for r in plain.score(QUERIES[1], docs)]
    assert max(abs(a - b) for a, b in zip(other, expected, strict=True)) <= 1e-5 * max(
        1.0, max(abs(e) for e in expected)
    )


@pytest.mark.parametrize("family", ["st_bi_encoder", "colbert_ir"])
def test_cache_stays_bounded(family: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(family)
    scorer = Scorer.load(path, doc_cache_size=5)
    plain = Scorer.load(path)
    got = _scores(scorer, QUERIES[0], MANY_DOCS[:12])
    assert scorer.cache_info().entries == 5
    assert got == pytest.approx(_scores(plain, QUERIES[0], MANY_DOCS[:12]), rel=1e-6, abs=1e-6)
    # Evicted documents are encoded again, and still score right.
    again = _scores(scorer, QUERIES[0], MANY_DOCS[:12])
    assert again == pytest.approx(got, rel=1e-6, abs=1e-6)
    assert scorer.cache_info().entries == 5


@pytest.mark.parametrize("family", ["st_bi_encoder", "colbert_ir"])
def test_cache_key_includes_truncation_and_activation(
    family: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(family)
    cached = Scorer.load(path, doc_cache_size=100)
    plain = Scorer.load(path)
    docs = ["word " * 40, "a short document", "token " * 25]
    for kw in ({}, {"truncate_prompt_tokens": 8}, {"use_activation": False}, {}):
        got = cached.score(QUERIES[0], docs, **kw)
        want = plain.score(QUERIES[0], docs, **kw)
        assert [r.truncated for r in got] == [r.truncated for r in want]
        assert [r.num_tokens for r in got] == [r.num_tokens for r in want]
        assert [r.score for r in got] == pytest.approx([r.score for r in want], rel=1e-6,
                                                       abs=1e-6)
    assert any(r.truncated for r in cached.score(QUERIES[0], docs, truncate_prompt_tokens=8))


# -- bfloat16 ----------------------------------------------------------------------------------
def _spearman(a: list[float], b: list[float]) -> float:
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_auto_dtype_stays_float32_on_cpu(bert_ce: Path) -> None:  # exact by default
    assert Scorer.load(bert_ce, device="cpu").dtype == "float32"


def test_bfloat16_cross_encoder_ranks_like_float32(bert_ce: Path, packed_always: None) -> None:
    fast = Scorer.load(bert_ce, dtype="bfloat16")
    assert fast.dtype == "bfloat16"
    exact = _scores(Scorer.load(bert_ce), QUERIES[0], MANY_DOCS)
    half = _scores(fast, QUERIES[0], MANY_DOCS)
    assert max(abs(a - b) for a, b in zip(exact, half, strict=True)) < 0.05
    assert _spearman(exact, half) > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("score_type", ["bi-encoder", "late-interaction"])
def test_bfloat16_ranks_like_float32_on_real_weights(minilm: Path, score_type: str) -> None:
    from engine.datasets import load_scifact_mini

    data = load_scifact_mini()
    query = next(iter(data.queries.values()))
    docs = list(data.corpus.values())[:40]
    exact = _scores(Scorer.load(minilm, score_type=score_type), query, docs)
    half = _scores(Scorer.load(minilm, score_type=score_type, dtype="bfloat16"), query, docs)
    assert _spearman(exact, half) > 0.99
    top = set(sorted(range(40), key=lambda i: -exact[i])[:10])
    assert len(top & set(sorted(range(40), key=lambda i: -half[i])[:10])) >= 9


@pytest.mark.parametrize("family", ["st_bi_encoder", "colbert_ir"])
def test_repeated_queries_in_n_to_n_score_like_single_pairs(
    family: str, request: pytest.FixtureRequest
) -> None:
    scorer = Scorer.load(request.getfixturevalue(family))
    queries = [QUERIES[i % 2] for i in range(len(DOCUMENTS))]  # each query three times
    together = _scores(scorer, queries, DOCUMENTS)
    alone = [scorer.score(q, d)[0].score for q, d in zip(queries, DOCUMENTS, strict=True)]
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-5)
