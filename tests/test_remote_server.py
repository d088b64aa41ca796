"""RemoteScorer against our own server on a loopback port: for every flavour the server speaks,
remote scores equal local scores for the same model (≤1e-6), sync and async, chunked or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import RemoteScoreError, RemoteScorer, Scorer
from engine.server import ServerConfig, create_app
from tests.conftest import DOCUMENTS as ALL_DOCUMENTS
from tests.conftest import QUERIES
from tests.test_server import ServerThread

# The server scores as vLLM does, Scorer as sentence-transformers; they agree on every input
# but an empty document (vLLM encodes the query alone): see test_an_empty_document_differs.
DOCUMENTS = [d for d in ALL_DOCUMENTS if d]

KEY = "remote-parity-key"
TOL = 1e-6

# (api, path) pairs the server answers; None = the flavour's own default route.
ROUTES = [
    ("vllm-score", None), ("vllm-score", "/v1/score"),
    ("vllm-rerank", None), ("vllm-rerank", "/v1/rerank"), ("vllm-rerank", "/v2/rerank"),
    ("cohere", None), ("jina", None), ("infinity", None),
]
IDS = [f"{api}{path or ''}" for api, path in ROUTES]


@pytest.fixture(scope="module")
def scorer(bert_ce: Path) -> Scorer:
    return Scorer.load(bert_ce)


@pytest.fixture(scope="module")
def server(scorer: Scorer) -> Iterator[ServerThread]:
    app = create_app(scorer, ServerConfig(served_model_name="tiny-ce", api_key=KEY,
                                          max_documents_per_request=4))
    with ServerThread(app) as running:
        yield running


def remote(server: ServerThread, api: str, path: str | None, **kwargs: object) -> RemoteScorer:
    return RemoteScorer(server.url, api=api, path=path, model="tiny-ce", api_key=KEY,
                        retry_backoff=0.001, **kwargs)  # type: ignore[arg-type]


def assert_close(remote_scores: list[float], local_scores: list[float]) -> None:
    assert len(remote_scores) == len(local_scores)
    assert max(abs(a - b) for a, b in zip(remote_scores, local_scores, strict=True)) <= TOL


@pytest.mark.parametrize(("api", "path"), ROUTES, ids=IDS)
def test_remote_equals_local(server: ServerThread, scorer: Scorer, api: str, path: str | None
                             ) -> None:
    # Six documents over a server cap of four: the client must split to max_batch_size.
    client = remote(server, api, path, max_batch_size=4)
    for queries, docs in ((QUERIES[0], DOCUMENTS), (QUERIES[1], DOCUMENTS[0]),
                          ([QUERIES[0], QUERIES[1], QUERIES[0]], DOCUMENTS[:3])):
        got = client.score(queries, docs)
        assert [r.index for r in got] == list(range(len(got)))
        assert_close([r.score for r in got], [r.score for r in scorer.score(queries, docs)])
    ranked = client.rerank(QUERIES[0], DOCUMENTS, top_n=4)
    want = scorer.rerank(QUERIES[0], DOCUMENTS, top_n=4)
    assert [r.index for r in ranked] == [w.index for w in want]
    assert [r.document for r in ranked] == [w.document for w in want]
    assert_close([r.score for r in ranked], [w.score for w in want])
    client.close()


@pytest.mark.parametrize(("api", "path"), ROUTES, ids=IDS)
async def test_async_remote_equals_local(server: ServerThread, scorer: Scorer, api: str,
                                         path: str | None) -> None:
    async with remote(server, api, path, max_batch_size=2, max_concurrency=2) as client:
        got = await client.ascore(QUERIES[1], DOCUMENTS)
        assert_close([r.score for r in got], [r.score for r in scorer.score(QUERIES[1], DOCUMENTS)])
        ranked = await client.arerank(QUERIES[1], DOCUMENTS)
        want = scorer.rerank(QUERIES[1], DOCUMENTS)
        assert [r.index for r in ranked] == [w.index for w in want]


@pytest.mark.parametrize(("api", "path"), [("vllm-score", None), ("vllm-rerank", None),
                                           ("infinity", None)])
def test_raw_logits_equal_local(server: ServerThread, scorer: Scorer, api: str, path: str | None
                                ) -> None:
    got = remote(server, api, path).score(QUERIES[0], DOCUMENTS[:4], use_activation=False)
    want = scorer.score(QUERIES[0], DOCUMENTS[:4], use_activation=False)
    assert_close([r.score for r in got], [r.score for r in want])
    activated = scorer.score(QUERIES[0], DOCUMENTS[:4])
    assert any(abs(a.score - b.score) > 1e-3 for a, b in zip(got, activated, strict=True))


def test_truncation_reaches_the_server(server: ServerThread, scorer: Scorer) -> None:
    got = remote(server, "vllm-rerank", None).score(QUERIES[0], DOCUMENTS[:4],
                                                    truncate_prompt_tokens=6)
    want = scorer.score(QUERIES[0], DOCUMENTS[:4], truncate_prompt_tokens=6)
    assert_close([r.score for r in got], [r.score for r in want])


def test_server_errors_reach_the_caller_typed(server: ServerThread, scorer: Scorer) -> None:
    with pytest.raises(RemoteScoreError) as info:
        remote(server, "vllm-rerank", None).score(QUERIES[0], ["a"], truncate_prompt_tokens=10**6)
    assert info.value.status_code == 400
    assert "greater than max_model_len" in (info.value.server_message or "")
    # Cohere's max_tokens_per_doc reaches the server, which cuts each document as vLLM does.
    capped = remote(server, "cohere", None).score(QUERIES[0], DOCUMENTS[:2],
                                                  truncate_prompt_tokens=2)
    cut = [" ".join(d.split()[:2]) for d in DOCUMENTS[:2]]
    assert_close([r.score for r in capped], [r.score for r in scorer.score(QUERIES[0], cut)])
    with pytest.raises(RemoteScoreError, match="max_tokens_per_doc") as info:
        remote(server, "cohere", None).score(QUERIES[0], ["a"], truncate_prompt_tokens=10**6)
    assert info.value.status_code == 400
    # No cap on the client: the server's 413 says to lower max_batch_size.
    with pytest.raises(RemoteScoreError, match="Lower max_batch_size") as info:
        remote(server, "vllm-rerank", None).score(QUERIES[0], DOCUMENTS)
    assert info.value.status_code == 413
    bad_key = RemoteScorer(server.url, api="vllm-score", api_key="wrong", max_retries=0)
    with pytest.raises(RemoteScoreError, match="A key was sent") as info:
        bad_key.score("q", ["a"])
    assert info.value.status_code == 401 and info.value.server_message == "Unauthorized"


def test_framework_wrappers_accept_a_remote_scorer(server: ServerThread, scorer: Scorer) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from engine.integrations import SupportsRerank
    from langchain_scorer import ScorerRerank as LangChainRerank
    from llamaindex_scorer import ScorerRerank as LlamaIndexRerank

    client = remote(server, "vllm-rerank", None, max_batch_size=4)
    assert isinstance(client, SupportsRerank)
    want = scorer.rerank(QUERIES[0], DOCUMENTS, top_n=3)

    docs = [Document(page_content=text, metadata={"i": i}) for i, text in enumerate(DOCUMENTS)]
    out = LangChainRerank(scorer=client, top_n=3).compress_documents(docs, QUERIES[0])
    assert [d.metadata["i"] for d in out] == [w.index for w in want]
    assert_close([d.metadata["relevance_score"] for d in out], [w.score for w in want])

    nodes = [NodeWithScore(node=TextNode(text=text, id_=str(i)))
             for i, text in enumerate(DOCUMENTS)]
    ranked = LlamaIndexRerank(scorer=client, top_n=3).postprocess_nodes(
        nodes, query_bundle=QueryBundle(QUERIES[0]))
    assert [n.node.node_id for n in ranked] == [str(w.index) for w in want]
    assert_close([float(n.score) for n in ranked], [w.score for w in want])


def test_an_empty_document_differs_as_documented(server: ServerThread, scorer: Scorer) -> None:
    """The one input where the server (vLLM's rules) and Scorer (sentence-transformers') part:
    vLLM tokenizes (query, "") as the query alone; Scorer pairs it with an empty segment."""
    from engine import LLM

    got = remote(server, "vllm-score", None).score(QUERIES[0], ["", "a"])
    vllm_like = [o.outputs.score for o in LLM(model=str(scorer.model), use_tqdm_on_load=False)
                 .score(QUERIES[0], ["", "a"], use_tqdm=False)]
    assert_close([r.score for r in got], vllm_like)
    ours = [r.score for r in scorer.score(QUERIES[0], ["", "a"])]
    assert abs(ours[1] - got[1].score) <= TOL and abs(ours[0] - got[0].score) > TOL
