"""llamaindex_scorer: conformance with the engine, events, serialisation, and end to end."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import Field, ValidationError

import llamaindex_scorer
from engine import InputError, ModelLoadError, Scorer
from engine.datasets import load_scifact_mini
from llamaindex_scorer import ScorerEmbedding, ScorerRerank
from tests.conftest import DOCUMENTS

QUERY = "what is the capital of france?"


@pytest.fixture(scope="module")
def ce(bert_ce):
    return Scorer.load(bert_ce)


@pytest.fixture(scope="module")
def bi(st_bi_encoder):
    return Scorer.load(st_bi_encoder)


def make_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(
                text=text,
                id_=f"node-{i}",
                metadata={"title": f"title {i}", "tags": [i, "x"]},
                excluded_llm_metadata_keys=["tags"],
            ),
            score=0.1 * i,
        )
        for i, text in enumerate(DOCUMENTS)
    ]


def dump(nodes: list[NodeWithScore]) -> list[dict]:
    return [n.model_dump() for n in nodes]


def test_public_names_are_pinned():
    assert llamaindex_scorer.__all__ == ["ScorerEmbedding", "ScorerRerank"]
    for name in llamaindex_scorer.__all__:
        cls = getattr(llamaindex_scorer, name)
        assert cls.__name__ == name and cls.class_name() == name


# -- conformance -------------------------------------------------------------------------------
def test_order_and_scores_equal_engine_rerank(ce):
    nodes = make_nodes()
    out = ScorerRerank(scorer=ce, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    expected = ce.rerank(QUERY, texts)
    assert [n.node.id_ for n in out] == [nodes[r.index].node.id_ for r in expected]
    assert [n.score for n in out] == [r.score for r in expected]
    assert all(type(n.score) is float for n in out)


def test_metadata_mode_chooses_the_text(ce):
    nodes = make_nodes()
    for mode in (MetadataMode.NONE, MetadataMode.ALL):
        out = ScorerRerank(scorer=ce, top_n=None, metadata_mode=mode).postprocess_nodes(
            nodes, query_str=QUERY
        )
        expected = ce.rerank(QUERY, [n.node.get_content(metadata_mode=mode) for n in nodes])
        assert [n.score for n in out] == [r.score for r in expected]
    assert nodes[0].node.get_content(MetadataMode.NONE) != nodes[0].node.get_content(
        MetadataMode.ALL
    )


def test_ids_kept_and_inputs_never_mutated(ce):
    nodes = make_nodes()
    before = dump(nodes)
    reranker = ScorerRerank(scorer=ce, top_n=4, keep_retrieval_score=True)
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert dump(nodes) == before
    originals = {n.node.id_: n for n in nodes}
    for n in out:
        original = originals[n.node.id_]
        assert n is not original and n.node is not original.node
        assert n.node.get_content(MetadataMode.NONE) == original.node.get_content(MetadataMode.NONE)
    out[0].node.metadata["tags"].append("changed")
    out[0].node.excluded_embed_metadata_keys.append("title")
    assert dump(nodes) == before


def test_retrieval_score_is_kept_but_never_reaches_the_text(ce):
    nodes = make_nodes()
    out = ScorerRerank(scorer=ce, top_n=None, keep_retrieval_score=True).postprocess_nodes(
        nodes, query_str=QUERY
    )
    originals = {n.node.id_: n for n in nodes}
    for n in out:
        assert n.node.metadata["retrieval_score"] == originals[n.node.id_].score
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            assert "retrieval_score" not in n.node.get_content(metadata_mode=mode)
            # The rest of the metadata is rendered exactly as before.
            assert n.node.get_content(mode) == originals[n.node.id_].node.get_content(mode)
    assert "retrieval_score" in out[0].node.get_content(MetadataMode.ALL)
    plain = ScorerRerank(scorer=ce, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    assert all("retrieval_score" not in n.node.metadata for n in plain)


def test_threshold_and_top_n_together(ce):
    nodes = make_nodes()
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    full = ce.rerank(QUERY, texts)
    threshold = full[3].score
    assert full[4].score < threshold
    expected = [nodes[r.index].node.id_ for r in full]

    def ids(**kwargs):
        reranker = ScorerRerank(scorer=ce, **kwargs)
        return [n.node.id_ for n in reranker.postprocess_nodes(nodes, query_str=QUERY)]

    assert ids(top_n=None, score_threshold=threshold) == expected[:4]
    assert ids(top_n=2, score_threshold=threshold) == expected[:2]
    assert ids(top_n=6, score_threshold=threshold) == expected[:4]
    assert ids(top_n=5) == expected[:5]


def test_construction_and_call_errors_are_clear(ce):
    with pytest.raises(ValidationError, match="top_m"):
        ScorerRerank(top_m=3)
    with pytest.raises(ValidationError, match="top_n must be a positive int"):
        ScorerRerank(top_n=0)
    with pytest.raises(ValidationError, match="not both"):
        ScorerRerank(scorer=ce, model="elsewhere")
    with pytest.raises(InputError, match="needs a query"):
        ScorerRerank(scorer=ce).postprocess_nodes(make_nodes())
    with pytest.raises(InputError, match=r"nodes\[0\] is TextNode"):
        ScorerRerank(scorer=ce).postprocess_nodes([TextNode(text="x")], query_str=QUERY)


async def test_async_equals_sync(ce):
    reranker = ScorerRerank(scorer=ce, top_n=4, keep_retrieval_score=True)
    nodes = make_nodes()
    got = await reranker.apostprocess_nodes(nodes, query_str=QUERY)
    assert dump(got) == dump(reranker.postprocess_nodes(nodes, query_str=QUERY))


class AsyncOnlyScorer:
    """A real scorer reached only through its async methods, to prove the native async path."""

    def __init__(self, scorer):
        self.inner, self.model, self.async_calls = scorer, scorer.model, 0

    def score(self, *args, **kwargs):
        raise AssertionError("the sync path was used from async code")

    rerank = score

    async def ascore(self, *args, **kwargs):
        raise AssertionError("not used by the postprocessor")

    async def arerank(self, *args, **kwargs):
        self.async_calls += 1
        return await self.inner.arerank(*args, **kwargs)


async def test_apostprocess_uses_the_scorers_async_path_concurrently(ce):
    scorer = AsyncOnlyScorer(ce)
    reranker = ScorerRerank(scorer=scorer, top_n=3)
    sync = ScorerRerank(scorer=ce, top_n=3)
    nodes = make_nodes()
    queries = [f"{q} {i}" for i in range(8) for q in ("capital of france", "scurvy")]
    results = await asyncio.gather(
        *(reranker.apostprocess_nodes(nodes, query_str=q) for q in queries)
    )
    assert scorer.async_calls == len(queries)
    for query, got in zip(queries, results, strict=True):
        assert dump(got) == dump(sync.postprocess_nodes(nodes, query_str=query))


def test_a_remote_scorer_drops_in(ce):
    from engine import RemoteScorer
    from engine.server import ServerConfig, create_app
    from tests.test_server import ServerThread

    nodes = make_nodes()
    local = ScorerRerank(scorer=ce, top_n=4).postprocess_nodes(nodes, query_str=QUERY)
    app = create_app(ce, ServerConfig(served_model_name="tiny-ce"))
    with (
        ServerThread(app) as server,
        RemoteScorer(server.url, api="cohere", model="tiny-ce") as remote,
    ):
        reranker = ScorerRerank(scorer=remote, top_n=4)
        for got in (
            reranker.postprocess_nodes(nodes, query_str=QUERY),
            asyncio.run(reranker.apostprocess_nodes(nodes, query_str=QUERY)),
        ):
            assert [n.node.id_ for n in got] == [n.node.id_ for n in local]
            assert [n.score for n in got] == pytest.approx([n.score for n in local], abs=1e-6)


# -- events --------------------------------------------------------------------------------------
class CollectEvents(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "CollectEvents"

    def handle(self, event, **kwargs):
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


class CountReranking(BaseCallbackHandler):
    def __init__(self):
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.starts, self.ends = [], []

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kwargs):
        if event_type == CBEventType.RERANKING:
            self.starts.append(payload)
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kwargs):
        if event_type == CBEventType.RERANKING:
            self.ends.append(payload)

    def start_trace(self, trace_id=None):
        pass

    def end_trace(self, trace_id=None, trace_map=None):
        pass


@pytest.fixture
def events():
    handler = CollectEvents()
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("empty", [True, False])
async def test_events_balanced_on_every_path(ce, tmp_path, events, use_async, empty):
    callbacks = CountReranking()
    # Empty input must not load the model: a missing folder proves it.
    source = {"model": str(tmp_path / "missing")} if empty else {"scorer": ce}
    reranker = ScorerRerank(callback_manager=CallbackManager([callbacks]), top_n=2, **source)
    nodes = [] if empty else make_nodes()
    if use_async:
        out = await reranker.apostprocess_nodes(nodes, query_str=QUERY)
    else:
        out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == (0 if empty else 2)
    assert [type(e) for e in events] == [ReRankStartEvent, ReRankEndEvent]
    start, end = events
    assert start.nodes == nodes and start.query == QueryBundle(QUERY) and start.top_n == 2
    assert end.nodes == out
    assert len(callbacks.starts) == len(callbacks.ends) == 1
    assert callbacks.starts[0][EventPayload.QUERY_STR] == QUERY
    assert callbacks.ends[0][EventPayload.NODES] == out


def test_a_failed_load_closes_the_callback_event(tmp_path, events):
    callbacks = CountReranking()
    reranker = ScorerRerank(
        model=str(tmp_path / "missing"), callback_manager=CallbackManager([callbacks])
    )
    with pytest.raises(ModelLoadError):
        reranker.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert len(callbacks.starts) == len(callbacks.ends) == 1
    assert isinstance(callbacks.ends[0][EventPayload.EXCEPTION], ModelLoadError)


# -- serialisation -------------------------------------------------------------------------------
def test_to_dict_from_dict_round_trip_without_the_model(bert_ce, ce):
    reranker = ScorerRerank(
        model=bert_ce, model_kwargs={"max_length": 64}, top_n=2, score_threshold=0.1,
        metadata_mode=MetadataMode.NONE, keep_retrieval_score=True,
    )
    data = reranker.to_dict()
    assert data["class_name"] == "ScorerRerank" and data["model"] == str(bert_ce)
    restored = ScorerRerank.from_dict(data)
    assert restored.to_dict() == data
    assert not restored._scorer_source().loaded  # settings only; the model loads on first use
    json_restored = ScorerRerank.from_json(reranker.to_json())
    assert json_restored.to_dict() == data
    nodes = make_nodes()
    assert dump(restored.postprocess_nodes(nodes, query_str=QUERY)) == dump(
        reranker.postprocess_nodes(nodes, query_str=QUERY)
    )


def test_ready_scorer_is_never_serialised_or_silently_replaced(ce):
    data = ScorerRerank(scorer=ce, top_n=2).to_dict()
    assert data["scorer"] != ce and isinstance(data["scorer"], str)
    with pytest.raises(ValidationError, match=r"from_dict\(data, scorer=\.\.\.\)"):
        ScorerRerank.from_dict(data)
    assert ScorerRerank.from_dict(data, scorer=ce).scorer is ce


def test_pickle_round_trips_or_refuses_loudly(bert_ce, ce):
    reranker = ScorerRerank(model=bert_ce, top_n=2, keep_retrieval_score=True)
    nodes = make_nodes()
    out = reranker.postprocess_nodes(nodes, query_str=QUERY)
    restored = pickle.loads(pickle.dumps(reranker))
    assert restored.to_dict() == reranker.to_dict()
    assert dump(restored.postprocess_nodes(nodes, query_str=QUERY)) == dump(out)
    on_ready = ScorerRerank(scorer=ce)
    with pytest.raises(TypeError, match="ready scorer that can't be pickled"):
        pickle.dumps(on_ready)
    assert on_ready.scorer is ce  # refusing left the instance whole


# -- embeddings ----------------------------------------------------------------------------------
async def test_embedding_equals_engine_embed(st_bi_encoder, bi):
    embedding = ScorerEmbedding(model=st_bi_encoder)
    texts = list(DOCUMENTS)
    assert embedding.get_text_embedding_batch(texts) == bi.embed(texts)
    assert await embedding.aget_text_embedding_batch(texts) == bi.embed(texts)
    assert embedding.get_query_embedding("scurvy") == bi.embed(["scurvy"])[0]
    assert await embedding.aget_query_embedding("scurvy") == bi.embed(["scurvy"])[0]
    assert embedding.get_text_embedding("scurvy") == bi.embed(["scurvy"])[0]
    assert all(type(x) is float for x in embedding.get_query_embedding("scurvy"))
    assert embedding.model_name == str(st_bi_encoder)
    restored = ScorerEmbedding.from_dict(embedding.to_dict())
    assert restored.to_dict() == embedding.to_dict()


def test_embedding_refuses_a_cross_encoder(ce):
    with pytest.raises(ValidationError, match="Embeddings need a bi-encoder scorer"):
        ScorerEmbedding(scorer=ce)


def test_missing_llama_index_names_the_extra():
    code = (
        "import sys; sys.modules['llama_index'] = None; sys.modules['llama_index.core'] = None\n"
        "try:\n    import llamaindex_scorer\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MissingDependency" in out.stdout and "scorer[llamaindex]" in out.stdout, out.stderr


# -- end to end: VectorStoreIndex + query engine with MockLLM, bundled MiniLM ---------------------
E2E_QUERIES = {"137": "26016929", "399": "791050"}
MINILM_OPTIONS = {"max_length": 128}


@pytest.fixture(scope="module")
def scifact_query_engine(minilm):
    data = load_scifact_mini()
    doc_ids = sorted({c for q in E2E_QUERIES for c in data.candidates[q]})
    nodes = [TextNode(text=data.corpus[c], id_=c, metadata={"doc_id": c}) for c in doc_ids]
    index = VectorStoreIndex(
        nodes, embed_model=ScorerEmbedding(model=minilm, model_kwargs=MINILM_OPTIONS)
    )
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=8,
        node_postprocessors=[
            ScorerRerank(model=minilm, model_kwargs=MINILM_OPTIONS, top_n=3,
                         keep_retrieval_score=True)
        ],
    )
    return engine, data


def _check_e2e(response, relevant):
    sources = response.source_nodes
    assert len(sources) == 3
    assert sources[0].node.id_ == relevant and sources[0].node.metadata["doc_id"] == relevant
    scores = [n.score for n in sources]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    # The kept retrieval score is in the metadata but not in what the LLM was shown.
    assert all("retrieval_score" in n.node.metadata for n in sources)
    assert "retrieval_score" not in str(response)


def test_query_engine_end_to_end_sync(scifact_query_engine):
    engine, data = scifact_query_engine
    for qid, relevant in E2E_QUERIES.items():
        _check_e2e(engine.query(data.queries[qid]), relevant)


async def test_query_engine_end_to_end_async(scifact_query_engine):
    engine, data = scifact_query_engine
    for qid, relevant in E2E_QUERIES.items():
        response = await engine.aquery(data.queries[qid])
        _check_e2e(response, relevant)
        assert dump(response.source_nodes) == dump(engine.query(data.queries[qid]).source_nodes)
