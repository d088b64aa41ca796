"""Properties every backend keeps, on generated inputs (hypothesis).

- rerank is permutation-equivariant: shuffling the documents moves their scores with them;
- a pair's score does not depend on its batch company (exact mode, ≤ 1e-6 relative);
- every result's index maps to its document;
- top_n and score_threshold never drop a better document;
- the wrappers never change their inputs and keep the documents' ids.

Example counts are bounded so the suite stays fast; ``pytest --hypothesis-profile=long`` runs
thousands (profiles in tests/conftest.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Scorer
from engine.integrations import ScorerSource
from tests.models import CORPUS

BACKENDS = ["bert_ce", "st_bi_encoder", "colbert_ir", "qwen3_llm_reranker"]
WORDS = sorted({w for line in CORPUS for w in line.split()})
REL = 1e-6  # exact (float32) mode

texts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join)
documents = st.lists(texts, min_size=1, max_size=8)

_loaded: dict[str, Scorer] = {}


@pytest.fixture(params=BACKENDS)
def scorer(request: pytest.FixtureRequest) -> Scorer:
    name = request.param
    if name not in _loaded:
        path: Path = request.getfixturevalue(name)
        _loaded[name] = Scorer.load(path)
    return _loaded[name]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(1.0, abs(a), abs(b))


@given(query=texts, docs=documents, data=st.data())
def test_rerank_is_permutation_equivariant(
    scorer: Scorer, query: str, docs: list[str], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(docs))))
    shuffled = [docs[i] for i in order]
    plain = {r.index: r.score for r in scorer.rerank(query, docs)}
    moved = {order[r.index]: r.score for r in scorer.rerank(query, shuffled)}
    assert plain.keys() == moved.keys() == set(range(len(docs)))
    assert all(_close(plain[i], moved[i]) for i in plain)


@given(query=texts, doc=texts, before=documents, after=documents)
def test_a_pairs_score_is_independent_of_its_batch_company(
    scorer: Scorer, query: str, doc: str, before: list[str], after: list[str]
) -> None:
    alone = scorer.score(query, doc)[0].score
    in_company = scorer.score(query, [*before, doc, *after])[len(before)].score
    assert _close(alone, in_company), (alone, in_company)


@given(query=texts, docs=documents, top_n=st.integers(0, 12))
def test_every_result_maps_to_its_document_and_top_n_keeps_the_best(
    scorer: Scorer, query: str, docs: list[str], top_n: int
) -> None:
    everything = scorer.rerank(query, docs)
    ranked = scorer.rerank(query, docs, top_n=top_n)
    assert all(r.document == docs[r.index] for r in ranked)
    assert [r.index for r in ranked] == [r.index for r in everything][: top_n or len(docs)]
    kept = {r.index for r in ranked}
    dropped = [r.score for r in everything if r.index not in kept]
    assert not dropped or min(r.score for r in ranked) >= max(dropped)


@given(query=texts, docs=documents, top_n=st.none() | st.integers(1, 12),
       threshold=st.none() | st.floats(-2.0, 2.0))
def test_threshold_and_top_n_never_drop_a_better_document(
    scorer: Scorer, query: str, docs: list[str], top_n: int | None, threshold: float | None
) -> None:
    source = ScorerSource(scorer=scorer)
    kept = source.rerank(query, docs, top_n=top_n, score_threshold=threshold)
    scores = {r.index: r.score for r in scorer.rerank(query, docs)}
    assert all(threshold is None or r.score >= threshold for r in kept)
    kept_ids = {r.index for r in kept}
    better_dropped = [
        i for i, s in scores.items()
        if i not in kept_ids and (threshold is None or s >= threshold)
        and kept and s > min(r.score for r in kept)
    ]
    assert not better_dropped
    if top_n is not None:
        assert len(kept) <= top_n


@given(query=texts, docs=documents, data=st.data())
def test_langchain_never_mutates_documents_and_keeps_their_ids(
    scorer: Scorer, query: str, docs: list[str], data: st.DataObject
) -> None:
    from langchain_core.documents import Document

    from langchain_scorer import ScorerRerank

    inputs = [Document(page_content=d, id=f"doc-{i}", metadata={"n": i, "tags": ["x"]})
              for i, d in enumerate(docs)]
    before = copy.deepcopy(inputs)
    top_n = data.draw(st.none() | st.integers(1, len(docs)))
    out = ScorerRerank(scorer=scorer, top_n=top_n).compress_documents(inputs, query)
    assert [d.model_dump() for d in inputs] == [d.model_dump() for d in before]
    by_id = {d.id: d for d in inputs}
    for doc in out:
        original = by_id[doc.id]
        assert doc.page_content == original.page_content
        assert doc.metadata["n"] == original.metadata["n"] and "relevance_score" in doc.metadata
        doc.metadata["tags"].append("changed")  # a result's metadata is its own
    assert [d.model_dump() for d in inputs] == [d.model_dump() for d in before]


@given(query=texts, docs=documents)
def test_llamaindex_never_mutates_nodes_and_keeps_their_ids(
    scorer: Scorer, query: str, docs: list[str]
) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_scorer import ScorerRerank

    nodes = [NodeWithScore(node=TextNode(text=d, id_=f"node-{i}", metadata={"n": i}),
                           score=float(i)) for i, d in enumerate(docs)]
    before = [(n.node.id_, n.node.text, dict(n.node.metadata), n.score) for n in nodes]
    out = ScorerRerank(scorer=scorer, top_n=None, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=query
    )
    assert [(n.node.id_, n.node.text, dict(n.node.metadata), n.score) for n in nodes] == before
    assert sorted(n.node.id_ for n in out) == sorted(n.node.id_ for n in nodes)
    texts_by_id = {n.node.id_: n.node.text for n in nodes}
    assert all(n.node.text == texts_by_id[n.node.id_] for n in out)
