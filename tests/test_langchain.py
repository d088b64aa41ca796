"""langchain_scorer: conformance with the engine and end to end with real LangChain classes."""

from __future__ import annotations

import asyncio
import copy
import pickle
import subprocess
import sys

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import ValidationError

import langchain_scorer
from engine import InputError, ModelLoadError, Scorer
from engine.datasets import load_scifact_mini
from langchain_scorer import ScorerCrossEncoder, ScorerEmbeddings, ScorerRerank
from tests.conftest import DOCUMENTS

QUERY = "what is the capital of france?"


@pytest.fixture(scope="module")
def ce(bert_ce):
    return Scorer.load(bert_ce)


@pytest.fixture(scope="module")
def bi(st_bi_encoder):
    return Scorer.load(st_bi_encoder)


def make_docs() -> list[Document]:
    return [
        Document(
            page_content=text,
            id=f"doc-{i}",
            metadata={"source": f"s{i}", "title": f"title {i}", "nested": {"tags": [i, "x"]}},
        )
        for i, text in enumerate(DOCUMENTS)
    ]


def test_public_names_are_pinned():
    assert langchain_scorer.__all__ == ["ScorerCrossEncoder", "ScorerEmbeddings", "ScorerRerank"]
    for name in langchain_scorer.__all__:
        assert getattr(langchain_scorer, name).__name__ == name


# -- conformance -------------------------------------------------------------------------------
def test_order_and_scores_equal_engine_rerank(ce):
    docs = make_docs()
    out = ScorerRerank(scorer=ce, top_n=None).compress_documents(docs, QUERY)
    expected = ce.rerank(QUERY, [d.page_content for d in docs])
    assert [d.id for d in out] == [docs[r.index].id for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == [r.score for r in expected]
    assert all(type(d.metadata["relevance_score"]) is float for d in out)


def test_ids_and_metadata_kept_inputs_never_mutated(ce):
    docs = make_docs()
    before = copy.deepcopy(docs)
    out = ScorerRerank(scorer=ce, top_n=4, score_key="ce_score").compress_documents(docs, QUERY)
    assert docs == before
    by_id = {d.id: d for d in before}
    for d in out:
        original = by_id[d.id]
        assert d.page_content == original.page_content
        assert {k: v for k, v in d.metadata.items() if k != "ce_score"} == original.metadata
    # The copies own their metadata: changing a result never reaches the caller's document.
    out[0].metadata["nested"]["tags"].append("changed")
    out[0].metadata["source"] = "changed"
    assert docs == before


def test_threshold_and_top_n_together(ce):
    docs = make_docs()
    full = ce.rerank(QUERY, [d.page_content for d in docs])
    threshold = full[3].score  # four documents at or above it
    assert full[4].score < threshold

    def ids(**kwargs):
        return [d.id for d in ScorerRerank(scorer=ce, **kwargs).compress_documents(docs, QUERY)]

    expected = [docs[r.index].id for r in full]
    assert ids(top_n=None, score_threshold=threshold) == expected[:4]
    assert ids(top_n=2, score_threshold=threshold) == expected[:2]
    assert ids(top_n=6, score_threshold=threshold) == expected[:4]
    assert ids(top_n=5) == expected[:5]
    assert ids(top_n=None, score_threshold=full[0].score + 1.0) == []


def test_document_template_over_metadata(ce):
    docs = make_docs()
    reranker = ScorerRerank(scorer=ce, top_n=None, document_template="{title}: {page_content}")
    out = reranker.compress_documents(docs, QUERY)
    expected = ce.rerank(QUERY, [f"title {i}: {d.page_content}" for i, d in enumerate(docs)])
    assert [d.id for d in out] == [docs[r.index].id for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == [r.score for r in expected]

    docs[2] = Document(page_content="no title here", id="odd", metadata={"source": "s"})
    with pytest.raises(InputError, match=r"\['title'\].*documents\[2\] \(id='odd'\)"):
        reranker.compress_documents(docs, QUERY)


@pytest.mark.parametrize("template", ["{0}", "{}", "{meta.title}", "{tags[0]}", "plain", "{oops"])
def test_bad_templates_are_refused_at_construction(template):
    with pytest.raises(ValidationError, match="document_template"):
        ScorerRerank(document_template=template)


def test_construction_errors_are_clear(ce, tmp_path):
    with pytest.raises(ValidationError, match="top_m"):
        ScorerRerank(top_m=3)  # extra="forbid": a typo is an error
    with pytest.raises(ValidationError, match="top_n must be a positive int"):
        ScorerRerank(top_n=0)
    with pytest.raises(ValidationError, match="NaN"):
        ScorerRerank(score_threshold=float("nan"))
    with pytest.raises(ValidationError, match="not both"):
        ScorerRerank(scorer=ce, model=str(tmp_path))
    with pytest.raises(ValidationError, match=r"Unknown load option\(s\) \['devcie'\]"):
        ScorerRerank(model=str(tmp_path), model_kwargs={"devcie": "cpu"})
    with pytest.raises(ValidationError, match="has no score, rerank, ascore, arerank"):
        ScorerRerank(scorer=object())
    with pytest.raises(InputError, match="query must be a string"):
        ScorerRerank(scorer=ce).compress_documents(make_docs(), ["two", "queries"])
    with pytest.raises(InputError, match=r"documents\[0\] is str"):
        ScorerRerank(scorer=ce).compress_documents(["bare text"], QUERY)


async def test_empty_input_returns_empty_without_loading(tmp_path):
    missing = str(tmp_path / "no-such-model")
    reranker = ScorerRerank(model=missing)
    assert reranker.compress_documents([], QUERY) == []
    assert await reranker.acompress_documents([], QUERY) == []
    assert ScorerCrossEncoder(model=missing).score([]) == []
    assert ScorerEmbeddings(model=missing).embed_documents([]) == []
    assert await ScorerEmbeddings(model=missing).aembed_documents([]) == []
    # The model is only loaded (and found missing) once there is something to score.
    with pytest.raises(ModelLoadError):
        reranker.compress_documents(make_docs(), QUERY)


def test_model_is_loaded_lazily_and_copies_share_it(bert_ce, ce):
    first = ScorerRerank(model=bert_ce)
    assert not first._scorer_source().loaded
    out = first.compress_documents(make_docs(), QUERY)
    assert first._scorer_source().loaded
    assert out == ScorerRerank(scorer=ce).compress_documents(make_docs(), QUERY)
    copied = first.model_copy(update={"top_n": 1})
    assert copied._scorer_source() is first._scorer_source()
    assert len(copied.compress_documents(make_docs(), QUERY)) == 1


def test_pickle_carries_the_settings_not_the_loaded_model(bert_ce):
    reranker = ScorerRerank(model=bert_ce, top_n=2, score_key="s")
    out = reranker.compress_documents(make_docs(), QUERY)  # loads the model
    restored = pickle.loads(pickle.dumps(reranker))
    assert not restored._scorer_source().loaded
    assert restored.compress_documents(make_docs(), QUERY) == out


async def test_async_equals_sync(ce):
    reranker = ScorerRerank(scorer=ce, top_n=4, score_threshold=0.0)
    docs = make_docs()
    assert await reranker.acompress_documents(docs, QUERY) == reranker.compress_documents(
        docs, QUERY
    )


class AsyncOnlyScorer:
    """A real scorer reached only through its async methods, to prove the native async path."""

    def __init__(self, scorer):
        self.inner = scorer
        self.model = scorer.model
        self.async_calls = 0

    def score(self, *args, **kwargs):
        raise AssertionError("the sync path was used from async code")

    rerank = score

    async def ascore(self, *args, **kwargs):
        self.async_calls += 1
        return await self.inner.ascore(*args, **kwargs)

    async def arerank(self, *args, **kwargs):
        self.async_calls += 1
        return await self.inner.arerank(*args, **kwargs)


async def test_acompress_uses_the_scorers_async_path(ce):
    scorer = AsyncOnlyScorer(ce)
    out = await ScorerRerank(scorer=scorer, top_n=3).acompress_documents(make_docs(), QUERY)
    assert scorer.async_calls == 1
    assert out == ScorerRerank(scorer=ce, top_n=3).compress_documents(make_docs(), QUERY)
    assert await ScorerCrossEncoder(scorer=scorer).ascore([(QUERY, "paris")]) == [
        r.score for r in ce.score(QUERY, ["paris"])
    ]


async def test_many_concurrent_acompress_calls_are_all_correct(ce):
    reranker = ScorerRerank(scorer=ce, top_n=3)
    docs = make_docs()
    queries = [f"{q} {i}" for i in range(12) for q in ("capital of france", "scurvy")]
    results = await asyncio.gather(*(reranker.acompress_documents(docs, q) for q in queries))
    for query, got in zip(queries, results, strict=True):
        assert got == reranker.compress_documents(docs, query)


def test_a_remote_scorer_drops_in(ce):
    from engine import RemoteScorer
    from engine.server import ServerConfig, create_app
    from tests.test_server import ServerThread

    # Non-empty documents: on an empty one the server (vLLM's rules) and Scorer differ.
    docs = [d for d in make_docs() if d.page_content]
    local = ScorerRerank(scorer=ce, top_n=4).compress_documents(docs, QUERY)
    app = create_app(ce, ServerConfig(served_model_name="tiny-ce"))
    with ServerThread(app) as server, RemoteScorer(server.url, api="vllm-rerank") as remote:
        reranker = ScorerRerank(scorer=remote, top_n=4)
        for got in (
            reranker.compress_documents(docs, QUERY),
            asyncio.run(reranker.acompress_documents(docs, QUERY)),
        ):
            assert [d.id for d in got] == [d.id for d in local]
            assert [d.metadata["relevance_score"] for d in got] == pytest.approx(
                [d.metadata["relevance_score"] for d in local], abs=1e-6
            )


# -- cross-encoder adapter and embeddings ------------------------------------------------------
def test_cross_encoder_reranker_gives_the_same_order(bert_ce):
    docs = make_docs()
    classic = CrossEncoderReranker(model=ScorerCrossEncoder(model=bert_ce), top_n=4)
    ours = ScorerRerank(model=bert_ce, top_n=4)
    assert [d.id for d in classic.compress_documents(docs, QUERY)] == [
        d.id for d in ours.compress_documents(docs, QUERY)
    ]


def test_cross_encoder_scores_pairs_in_order(ce):
    pairs = [(QUERY, DOCUMENTS[0]), ("scurvy", DOCUMENTS[2]), (QUERY, DOCUMENTS[1])]
    scores = ScorerCrossEncoder(scorer=ce).score(pairs)
    assert scores == [r.score for r in ce.score([q for q, _ in pairs], [d for _, d in pairs])]
    assert all(type(s) is float for s in scores)
    with pytest.raises(InputError, match=r"text_pairs\[0\]"):
        ScorerCrossEncoder(scorer=ce).score(["not a pair"])


async def test_embeddings_equal_engine_embed(st_bi_encoder, bi):
    embeddings = ScorerEmbeddings(model=st_bi_encoder)
    texts = list(DOCUMENTS)
    assert embeddings.embed_documents(texts) == bi.embed(texts)
    assert embeddings.embed_query("scurvy") == bi.embed(["scurvy"])[0]
    assert await embeddings.aembed_documents(texts) == bi.embed(texts)
    assert await embeddings.aembed_query("scurvy") == bi.embed(["scurvy"])[0]
    assert all(type(x) is float for x in embeddings.embed_query("scurvy"))
    with pytest.raises(InputError, match="embed_query"):
        embeddings.embed_documents("one string")


def test_embeddings_refuse_a_cross_encoder(ce, bert_ce):
    with pytest.raises(ValidationError, match="Embeddings need a bi-encoder scorer"):
        ScorerEmbeddings(scorer=ce)
    with pytest.raises(ValidationError, match="Embeddings need a bi-encoder"):
        ScorerEmbeddings(model=bert_ce, model_kwargs={"score_type": "cross-encoder"})


def test_missing_langchain_names_the_extra():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import langchain_scorer\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MissingDependency" in out.stdout and "scorer[langchain]" in out.stdout, out.stderr


# -- end to end: vector store + ContextualCompressionRetriever, bundled MiniLM -------------------
# SciFact mini claims whose one relevant abstract MiniLM puts first among its BM25 candidates.
E2E_QUERIES = {"137": "26016929", "399": "791050"}
# 128 tokens keeps the test quick on CPU; the relevant abstracts still win clearly.
MINILM_OPTIONS = {"max_length": 128}


@pytest.fixture(scope="module")
def scifact_retriever(minilm):
    data = load_scifact_mini()
    doc_ids = sorted({c for q in E2E_QUERIES for c in data.candidates[q]})
    docs = [Document(page_content=data.corpus[c], id=c, metadata={"doc_id": c}) for c in doc_ids]
    store = InMemoryVectorStore.from_documents(
        docs, ScorerEmbeddings(model=minilm, model_kwargs=MINILM_OPTIONS)
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=ScorerRerank(model=minilm, model_kwargs=MINILM_OPTIONS, top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": 8}),
    )
    return retriever, data


def _check_e2e(result, relevant):
    assert len(result) == 3
    assert result[0].id == relevant and result[0].metadata["doc_id"] == relevant
    scores = [d.metadata["relevance_score"] for d in result]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)


def test_retriever_end_to_end_sync(scifact_retriever):
    retriever, data = scifact_retriever
    for qid, relevant in E2E_QUERIES.items():
        _check_e2e(retriever.invoke(data.queries[qid]), relevant)


async def test_retriever_end_to_end_async(scifact_retriever):
    retriever, data = scifact_retriever
    for qid, relevant in E2E_QUERIES.items():
        result = await retriever.ainvoke(data.queries[qid])
        _check_e2e(result, relevant)
        assert result == retriever.invoke(data.queries[qid])
