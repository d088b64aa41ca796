"""Hybrid reranking in both wrappers (issue 15): the fused score ranks, the model's is kept.

The reference is engine.fusion's own functions (tested against their definitions in
tests/test_fusion.py) over the model's scores from Scorer.score on the same documents.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

import langchain_scorer
import llamaindex_scorer
from engine import InputError, Scorer, blend_scores, reciprocal_rank_fusion

QUERY = "what causes scurvy?"
TEXTS = ["scurvy comes from a lack of vitamin c", "the stock market fell",
         "sailors ate limes against scurvy", "paris is in france", "vitamin c is ascorbic acid"]
BM25 = [3.0, 9.0, 7.5, 1.0, 7.5]  # deliberately not the model's order, with a tie


@pytest.fixture(scope="module")
def scorer(bert_ce: Path) -> Scorer:
    return Scorer.load(bert_ce)


def _expected(scorer: Scorer, method: str, first: list[float], weight: float = 0.5,
              k: float = 60.0) -> tuple[list[int], list[float], list[float]]:
    model = [r.score for r in scorer.score(QUERY, TEXTS)]
    w = (1 - weight, weight)
    fused = (reciprocal_rank_fusion(first, model, k=k, weights=w) if method == "rrf"
             else blend_scores(first, model, weights=w))
    order = sorted(range(len(TEXTS)), key=lambda i: -fused[i])
    return order, fused, model


@pytest.mark.parametrize("method", ["rrf", "blend"])
@pytest.mark.parametrize("first_stage", ["order", "key"])
def test_langchain_hybrid_matches_engine_fusion(scorer: Scorer, method: str,
                                                first_stage: str) -> None:
    docs = [Document(page_content=t, id=str(i), metadata={"bm25": b})
            for i, (t, b) in enumerate(zip(TEXTS, BM25, strict=True))]
    before = copy.deepcopy(docs)
    key = "bm25" if first_stage == "key" else None
    first = BM25 if key else [float(len(TEXTS) - i) for i in range(len(TEXTS))]
    order, fused, model = _expected(scorer, method, first, weight=0.7)
    reranker = langchain_scorer.ScorerRerank(scorer=scorer, top_n=3, hybrid=method,
                                             hybrid_weight=0.7, first_stage_key=key)
    out = reranker.compress_documents(docs, QUERY)
    again = asyncio.run(reranker.acompress_documents(docs, QUERY))
    assert [d.id for d in out] == [str(i) for i in order[:3]] == [d.id for d in again]
    for d in out:
        i = int(d.id)
        assert d.metadata["relevance_score"] == pytest.approx(fused[i], abs=1e-12)
        assert d.metadata["model_score"] == pytest.approx(model[i], abs=1e-12)
    assert docs == before  # never mutates the caller's documents


@pytest.mark.parametrize("method", ["rrf", "blend"])
def test_llamaindex_hybrid_uses_node_scores(scorer: Scorer, method: str) -> None:
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=b)
             for i, (t, b) in enumerate(zip(TEXTS, BM25, strict=True))]
    before = copy.deepcopy(nodes)
    order, fused, model = _expected(scorer, method, BM25, k=10.0)
    reranker = llamaindex_scorer.ScorerRerank(scorer=scorer, top_n=None, hybrid=method,
                                              rrf_k=10.0)
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    again = asyncio.run(reranker.apostprocess_nodes(nodes, query_str=QUERY))
    assert [n.node.id_ for n in out] == [str(i) for i in order] == [n.node.id_ for n in again]
    for n in out:
        i = int(n.node.id_)
        assert n.score == pytest.approx(fused[i], abs=1e-12)
        assert n.node.metadata["model_score"] == pytest.approx(model[i], abs=1e-12)
        assert "model_score" in n.node.excluded_llm_metadata_keys  # never reaches a prompt
    assert [n.score for n in nodes] == [n.score for n in before]
    assert all("model_score" not in n.node.metadata for n in nodes)


def test_llamaindex_without_node_scores_fuses_the_retrieval_order(scorer: Scorer) -> None:
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]
    order, _, _ = _expected(scorer, "rrf", [float(len(TEXTS) - i) for i in range(len(TEXTS))])
    out = llamaindex_scorer.ScorerRerank(scorer=scorer, top_n=None,
                                         hybrid="rrf").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in out] == [str(i) for i in order]


def test_threshold_applies_to_the_fused_score(scorer: Scorer) -> None:
    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(TEXTS)]
    _, fused, _ = _expected(scorer, "blend", [float(len(TEXTS) - i) for i in range(len(TEXTS))])
    cut = sorted(fused)[2]
    out = langchain_scorer.ScorerRerank(scorer=scorer, top_n=None, hybrid="blend",
                                        score_threshold=cut).compress_documents(docs, QUERY)
    assert sorted(d.metadata["relevance_score"] for d in out) == sorted(f for f in fused
                                                                      if f >= cut)


@pytest.mark.parametrize(("options", "needle"), [
    ({"hybrid": "mean"}, "hybrid"),
    ({"hybrid": "rrf", "hybrid_weight": 1.5}, "hybrid_weight must be a number in [0, 1]"),
    ({"hybrid": "rrf", "rrf_k": -1}, "rrf_k must be a finite number >= 0"),
    ({"hybrid": "rrf", "model_score_key": ""}, "non-empty"),
])
def test_bad_hybrid_settings_are_refused(scorer: Scorer, options: dict[str, object],
                                         needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        langchain_scorer.ScorerRerank(scorer=scorer, **options)


def test_a_missing_first_stage_score_names_the_document(scorer: Scorer) -> None:
    docs = [Document(page_content=TEXTS[0], id="a", metadata={"bm25": 1.0}),
            Document(page_content=TEXTS[1], id="b", metadata={})]
    reranker = langchain_scorer.ScorerRerank(scorer=scorer, hybrid="rrf", first_stage_key="bm25")
    with pytest.raises(InputError, match=r"documents\[1\] \(id='b'\) has 'bm25' = None"):
        reranker.compress_documents(docs, QUERY)
