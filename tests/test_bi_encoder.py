"""Bi-encoder parity with SentenceTransformer.encode + cosine, and SciFact quality on MiniLM."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from engine import Scorer, ScoreType
from engine.datasets import load_scifact_mini, mean_ndcg
from tests.conftest import DOCUMENTS, QUERIES

TOL = 1e-5


def st_cosine(path: Path, queries: list[str], documents: list[str]) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    q = torch.as_tensor(model.encode(queries, convert_to_numpy=True, batch_size=4))
    d = torch.as_tensor(model.encode(documents, convert_to_numpy=True, batch_size=4))
    return torch.nn.functional.cosine_similarity(q, d, dim=-1)


@pytest.mark.parametrize("fixture", ["st_bi_encoder", "legacy_bi_encoder", "minilm"])
@pytest.mark.parametrize("shape", ["1:1", "1:N", "N:N"])
def test_parity_with_sentence_transformers(
    fixture: str, shape: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(fixture)
    scorer = Scorer.load(path)
    assert scorer.score_type is ScoreType.BI_ENCODER
    if shape == "1:1":
        queries, documents = QUERIES[0], DOCUMENTS[0]
        qs, ds = [QUERIES[0]], [DOCUMENTS[0]]
    elif shape == "1:N":
        queries, documents = QUERIES[1], DOCUMENTS
        qs, ds = [QUERIES[1]] * len(DOCUMENTS), DOCUMENTS
    else:
        qs = [QUERIES[i % 2] for i in range(len(DOCUMENTS))]
        queries, documents, ds = qs, DOCUMENTS, DOCUMENTS
    expected = st_cosine(path, qs, ds)
    got = torch.tensor([r.score for r in scorer.score(queries, documents)])
    assert torch.allclose(got, expected, atol=TOL, rtol=0), (got - expected).abs().max()
    if len(ds) > 2:
        assert got.std() > 0.01


def test_use_activation_false_leaves_cosine_unchanged(st_bi_encoder: Path) -> None:
    scorer = Scorer.load(st_bi_encoder)
    a = [r.score for r in scorer.score(QUERIES[0], DOCUMENTS)]
    b = [r.score for r in scorer.score(QUERIES[0], DOCUMENTS, use_activation=False)]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= TOL


def test_shuffle_and_batch_size_do_not_change_scores(st_bi_encoder: Path) -> None:
    docs = [f"{d} {i}" for i, d in enumerate(DOCUMENTS * 5)]
    one = [Scorer.load(st_bi_encoder).score(QUERIES[0], d)[0].score for d in docs]
    order = list(range(len(docs)))
    random.Random(1).shuffle(order)
    shuffled = Scorer.load(st_bi_encoder, batch_size=3).score(QUERIES[0], [docs[i] for i in order])
    back = [0.0] * len(docs)
    for pos, i in enumerate(order):
        back[i] = shuffled[pos].score
    assert max(abs(a - b) for a, b in zip(one, back, strict=True)) <= TOL
    big = [r.score for r in Scorer.load(st_bi_encoder, batch_size=64).score(QUERIES[0], docs)]
    assert max(abs(a - b) for a, b in zip(one, big, strict=True)) <= TOL


def test_truncation_is_flagged_and_matches_st_truncation(legacy_bi_encoder: Path) -> None:
    # legacy_bi_encoder has max_seq_length 64; sentence-transformers cuts silently, we flag it.
    long_doc = "the quick brown fox jumps over the lazy dog " * 20
    results = Scorer.load(legacy_bi_encoder).score(QUERIES[0], [long_doc, DOCUMENTS[0]])
    assert [r.truncated for r in results] == [True, False]
    assert results[0].num_tokens == len(
        Scorer.load(legacy_bi_encoder)._backend.encoder.tokenizer(QUERIES[0])["input_ids"]
    ) + 64
    expected = st_cosine(legacy_bi_encoder, [QUERIES[0]], [long_doc])
    assert abs(results[0].score - float(expected[0])) <= TOL


@pytest.mark.slow
def test_minilm_scifact_mini_ndcg() -> None:
    data = load_scifact_mini()
    scorer = Scorer.load()  # the bundled all-MiniLM-L6-v2
    run = {}
    for qid, cands in data.candidates.items():
        ranked = scorer.rerank(data.queries[qid], [data.corpus[d] for d in cands])
        run[qid] = [cands[r.index] for r in ranked]
    ndcg = mean_ndcg(run, data.qrels)
    assert abs(ndcg - 0.784) <= 0.01, ndcg
    assert abs(mean_ndcg(data.candidates, data.qrels) - ndcg) > 0.01  # reranking changed the order
