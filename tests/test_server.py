"""The vLLM-compatible server on a real loopback socket (uvicorn in a thread): request spellings,
response and error bodies, auth on every route, 413 limits, micro-batching, 32 concurrent
clients, graceful shutdown, and the ``scorer serve`` command."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import InputTooLongError, Scorer
from engine.calls import VllmTokenization
from engine.ranking import rank
from engine.server import ServerConfig, create_app
from engine.server.app import RERANK_ROUTES, SCORE_ROUTES
from engine.server.batcher import Job, MicroBatcher, merge_jobs, take_batch
from tests.conftest import DOCUMENTS, QUERIES

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key-4f1c"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOL = 1e-6  # batched and unbatched forwards differ only by padding, far below this


class ServerThread:
    """uvicorn serving ``app`` on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: Any, *, graceful_s: float = 30.0) -> None:
        import uvicorn

        self.app = app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=graceful_s)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        for _ in range(600):  # bounded wait for start-up
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.server.should_exit = True

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.thread.join(timeout=30)
        self.sock.close()


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.post(url + path, json=body, headers=headers, timeout=30, **kwargs)


def close(a: list[float], b: list[float], tol: float = TOL) -> bool:
    # Relative above 1: unnormalised MaxSim sums reach ≈10.
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y))
                                    for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def scorer(bert_ce: Path) -> Scorer:
    return Scorer.load(bert_ce)


@pytest.fixture(scope="module")
def server(scorer: Scorer) -> Iterator[ServerThread]:
    app = create_app(scorer, ServerConfig(served_model_name="tiny-ce", api_key=KEY,
                                          max_documents_per_request=8, max_body_bytes=4096))
    with ServerThread(app) as running:
        yield running


def served(scorer: Scorer, queries: Any, documents: Any, *, use_activation: bool | None = None,
           truncate_prompt_tokens: int | None = None, side: str | None = None) -> list[Any]:
    """What the server answers for these inputs: the same engine under vLLM's rules (as
    ``engine.LLM``; ``Scorer``'s own rules differ for empty and over-long documents)."""
    q = [queries] if isinstance(queries, str) else list(queries)
    d = [documents] if isinstance(documents, str) else list(documents)
    limit = scorer.max_model_len
    params = VllmTokenization(
        max_model_len=limit, side=side,
        truncate=limit if truncate_prompt_tokens == -1 else truncate_prompt_tokens)
    return scorer._score_vllm(q, d, use_activation=use_activation, tokenization=params)


def local(scorer: Scorer, queries: Any, documents: Any, **kwargs: Any) -> list[float]:
    return [r.score for r in served(scorer, queries, documents, **kwargs)]


# -- request spellings and response bodies ---------------------------------------------------------
@pytest.mark.parametrize("left,right", [("queries", "documents"), ("queries", "items"),
                                        ("data_1", "data_2"), ("text_1", "text_2")])
@pytest.mark.parametrize("path", SCORE_ROUTES)
def test_score_spellings_match_local(server: ServerThread, scorer: Scorer, path: str, left: str,
                                     right: str) -> None:
    for queries, docs in ((QUERIES[0], DOCUMENTS), (QUERIES + QUERIES, DOCUMENTS[:4]),
                          (QUERIES[1], DOCUMENTS[2])):
        r = post(server.url, path, {left: queries, right: docs})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"].startswith("score-") and body["object"] == "list"
        assert body["model"] == "tiny-ce" and isinstance(body["created"], int)
        assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
        assert all(d["object"] == "score" for d in body["data"])
        assert close([d["score"] for d in body["data"]], local(scorer, queries, docs))
        tokens = sum(res.num_tokens for res in served(scorer, queries, docs))
        assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens,
                                 "completion_tokens": 0, "prompt_tokens_details": None,
                                 "completion_tokens_details": None}


@pytest.mark.parametrize("path", RERANK_ROUTES)
def test_rerank_routes_rank_like_local(server: ServerThread, scorer: Scorer, path: str) -> None:
    r = post(server.url, path, {"query": QUERIES[0], "documents": DOCUMENTS, "top_n": 3,
                                "model": "tiny-ce"}, headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "usage", "results"}
    assert body["id"] == "score-abc-123" and body["model"] == "tiny-ce"
    want = rank(served(scorer, QUERIES[0], DOCUMENTS), DOCUMENTS, top_n=3)
    assert [x["index"] for x in body["results"]] == [w.index for w in want]
    assert close([x["relevance_score"] for x in body["results"]], [w.score for w in want])
    assert [x["document"] for x in body["results"]] == \
        [{"text": w.document, "multi_modal": None} for w in want]
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}


def test_rerank_request_id_field_top_n_zero_and_single_document(server: ServerThread) -> None:
    body = post(server.url, "/rerank", {"query": "q", "documents": DOCUMENTS, "top_n": 0,
                                        "request_id": "mine"}).json()
    assert body["id"] == "score-mine" and len(body["results"]) == len(DOCUMENTS)
    scores = [x["relevance_score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    one = post(server.url, "/rerank", {"query": "q", "documents": "just one"}).json()
    assert [x["index"] for x in one["results"]] == [0]
    big = post(server.url, "/rerank", {"query": "q", "documents": ["a", "b"], "top_n": 50}).json()
    assert len(big["results"]) == 2


def test_options_match_local(server: ServerThread, scorer: Scorer) -> None:
    docs = DOCUMENTS[:5]
    raw = local(scorer, "q", docs, use_activation=False)
    for flag in ({"use_activation": False}, {"softmax": False}, {"activation": False},
                 {"raw_scores": True}):
        body = post(server.url, "/score", {"queries": "q", "documents": docs, **flag}).json()
        assert close([d["score"] for d in body["data"]], raw), flag
    cut = post(server.url, "/score", {"queries": "q", "documents": docs,
                                      "truncate_prompt_tokens": 6}).json()
    assert close([d["score"] for d in cut["data"]], local(scorer, "q", docs,
                                                          truncate_prompt_tokens=6))
    ignored = post(server.url, "/score", {"queries": "q", "documents": docs,
                                          "encoding_format": "float", "return_documents": True,
                                          "priority": 3, "user": "u"})
    assert ignored.status_code == 200


# -- error bodies ----------------------------------------------------------------------------------
def assert_error(r: httpx.Response, status: int, type_: str, param: str | None, needle: str
                 ) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["type"] == type_ and error["param"] == param
    assert needle in error["message"], error["message"]


def test_pairing_errors_are_400(server: ServerThread) -> None:
    assert_error(post(server.url, "/score", {"queries": ["a", "b"], "documents": ["x", "y", "z"]}),
                 400, "BadRequestError", None, "Input lengths must be either 1:1, 1:N or N:N")
    assert_error(post(server.url, "/score", {"queries": ["a", "b"], "documents": "x"}),
                 400, "BadRequestError", None, "Input lengths must be either 1:1, 1:N or N:N")
    assert_error(post(server.url, "/score", {"text_1": [], "text_2": ["x"]}),
                 400, "BadRequestError", None, "At least one text element must be given")
    assert_error(post(server.url, "/rerank", {"query": "q", "documents": []}),
                 400, "BadRequestError", None, "At least one text_pair element must be given")


@pytest.mark.parametrize(
    ("path", "body", "param", "needle"),
    [
        ("/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, "body.top_n",
         "greater than or equal to 0"),
        ("/rerank", {"query": ["q"], "documents": ["a"]}, "body.query", "valid string"),
        ("/rerank", {"query": "q"}, "body.documents", "Field required"),
        ("/rerank", {"query": "q", "documents": [{"text": "a"}]}, "body.documents",
         "valid string"),
        ("/score", {"queries": "q", "documents": ["a"], "truncate_prompt_tokens": -2},
         "body.truncate_prompt_tokens", "greater than or equal to -1"),
        ("/score", {"queries": "q", "documents": ["a"], "use_activation": "maybe"},
         "body.use_activation", "valid boolean"),
        ("/score", {"queries": "q"}, "body", "one spelling"),
        ("/score", {"queries": "q", "documents": ["a"], "items": ["b"]}, "body", "one spelling"),
    ],
)
def test_validation_errors_are_vllm_bad_request(server: ServerThread, path: str, body: Any,
                                                param: str, needle: str) -> None:
    assert_error(post(server.url, path, body), 400, "Bad Request", param, needle)


def test_body_must_be_json(server: ServerThread) -> None:
    r = httpx.post(server.url + "/score", content=b"queries=q", timeout=30,
                   headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "Bad Request", None, "application/json")
    r = httpx.post(server.url + "/score", content=b'{"queries": "q",', timeout=30,
                   headers={**AUTH, "Content-Type": "application/json"})
    assert_error(r, 400, "Bad Request", "body", "not valid JSON")


@pytest.mark.parametrize(
    ("extra", "param", "needle"),
    [
        ({"truncate_prompt_tokens": 100000}, None,
         "truncate_prompt_tokens value is greater than max_model_len."),
        ({"max_tokens_per_doc": 512}, None, "max_tokens_per_doc (512) must be less than"),
        ({"max_tokens_per_query": -1}, None, "max_tokens_per_query must be a non-negative"),
        ({"instruction": "be nice"}, "chat_template_kwargs", "would be ignored"),
        ({"chat_template_kwargs": {"tokenize": True}}, None, "reserved keys"),
        ({"cache_salt": ""}, "cache_salt", "must be a non-empty string"),
    ],
)
def test_options_the_server_cannot_honour_are_400(server: ServerThread, extra: dict,
                                                  param: str | None, needle: str) -> None:
    r = post(server.url, "/rerank", {"query": "q", "documents": ["a"], **extra})
    assert_error(r, 400, "BadRequestError", param, needle)


def test_vllm_options_are_honoured(server: ServerThread, scorer: Scorer) -> None:
    docs = ["paris is the capital of france", "berlin is a city in germany"]
    left = post(server.url, "/score", {"queries": "capital", "documents": docs,
                                       "truncate_prompt_tokens": 6, "truncation_side": "left"})
    assert close([d["score"] for d in left.json()["data"]],
                 local(scorer, "capital", docs, truncate_prompt_tokens=6, side="left"))
    capped = post(server.url, "/score", {"queries": "capital", "documents": docs,
                                         "max_tokens_per_doc": 2})
    assert close([d["score"] for d in capped.json()["data"]],
                 local(scorer, "capital", ["paris is", "berlin is"]))
    for extra in ({"mm_processor_kwargs": {}}, {"padding": "do_not_pad"}):
        assert post(server.url, "/score", {"queries": "q", "documents": docs, **extra}
                    ).status_code == 200, extra


def test_multimodal_input_is_refused(server: ServerThread) -> None:
    image = {"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}
    needle = "MultiModalParam is not supported for BertForSequenceClassification"
    assert_error(post(server.url, "/rerank", {"query": "q", "documents": ["a", image]}),
                 400, "BadRequestError", None, needle)
    assert_error(post(server.url, "/score", {"queries": image, "documents": ["a"]}),
                 400, "BadRequestError", None, needle)


def test_input_too_long_is_400_with_param(bert_ce: Path) -> None:
    # As vLLM: over-long input is refused on the server whatever Scorer's overflow rule.
    short = Scorer.load(bert_ce, max_length=16)
    with ServerThread(create_app(short)) as srv:
        r = httpx.post(srv.url + "/rerank", json={"query": "q", "documents": ["a " * 40]},
                       timeout=30)
        cut = httpx.post(srv.url + "/rerank", timeout=30, json={
            "query": "q", "documents": ["a " * 40], "truncate_prompt_tokens": -1})
    assert_error(r, 400, "BadRequestError", "input_tokens",
                 "This model's maximum context length is 16 tokens. However, your prompt "
                 "contains at least 17 input tokens")
    assert "(parameter=input_tokens, value=17)" in r.json()["error"]["message"]
    assert cut.status_code == 200, cut.text


# -- auth ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [*SCORE_ROUTES, *RERANK_ROUTES])
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {KEY}", KEY, "Bearer"])
def test_every_scoring_route_needs_the_key(server: ServerThread, path: str,
                                           header: str | None) -> None:
    body = {"query": "q", "documents": ["a"]} if "rerank" in path else \
        {"queries": "q", "documents": ["a"]}
    headers = {"Authorization": header} if header is not None else {}
    r = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    assert post(server.url, path, body).status_code == 200


def test_models_needs_the_key_and_probes_do_not(server: ServerThread) -> None:
    assert httpx.get(server.url + "/v1/models").status_code == 401
    models = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == "tiny-ce" and entry["object"] == "model"
    assert entry["max_model_len"] == 512 and entry["owned_by"] == "vllm"
    assert entry["permission"][0]["object"] == "model_permission"
    for path in ("/health", "/ping", "/metrics", "/docs", "/openapi.json", "/version"):
        assert httpx.get(server.url + path).status_code == 200, path


def test_openapi_lists_every_route(server: ServerThread) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    for path in (*SCORE_ROUTES, *RERANK_ROUTES):
        assert "post" in spec["paths"][path], path
    assert "text/html" in httpx.get(server.url + "/docs").headers["content-type"]


# -- limits ----------------------------------------------------------------------------------------
def test_too_many_documents_is_413_naming_the_limit(server: ServerThread) -> None:
    docs = [f"d{i}" for i in range(9)]
    for path, body, param in (("/rerank", {"query": "q", "documents": docs}, "documents"),
                              ("/score", {"text_1": docs, "text_2": docs}, "text_2"),
                              ("/v1/score", {"queries": "q", "items": docs}, "items")):
        assert_error(post(server.url, path, body), 413, "PayloadTooLargeError", param,
                     "9 " + param + ", over the limit of 8 per request")
    assert post(server.url, "/rerank", {"query": "q", "documents": docs[:8]}).status_code == 200


def test_oversized_body_is_413_naming_the_limit(server: ServerThread) -> None:
    body = {"query": "q", "documents": ["x" * 3000, "y" * 3000]}
    assert_error(post(server.url, "/rerank", body), 413, "PayloadTooLargeError", "body",
                 "over the limit of 4096 bytes")
    # No Content-Length (chunked upload): counted while reading.
    payload = json.dumps(body).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 1000):
            yield payload[i:i + 1000]

    r = httpx.post(server.url + "/rerank", content=chunks(), timeout=30,
                   headers={**AUTH, "Content-Type": "application/json"})
    assert_error(r, 413, "PayloadTooLargeError", "body", "more than 4096 bytes")


# -- metrics ---------------------------------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_and_pairs(server: ServerThread) -> None:
    before = httpx.get(server.url + "/metrics").text
    for _ in range(3):
        assert post(server.url, "/v1/rerank", {"query": "q", "documents": ["a", "b"]}
                    ).status_code == 200
    after = httpx.get(server.url + "/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    assert 'scorer_requests_total{route="/v1/rerank",code="200"}' in after.text
    assert _metric(after.text, "scorer_pairs_scored_total") - \
        _metric(before, "scorer_pairs_scored_total") == 6
    assert _metric(after.text, "scorer_batched_requests_total") - \
        _metric(before, "scorer_batched_requests_total") == 3
    assert "# TYPE scorer_request_duration_seconds histogram" in after.text


# -- micro-batching --------------------------------------------------------------------------------
class Recording:
    """The real scorer's resolved-pairs entry point, recording each model call."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.calls: list[int] = []

    def __call__(self, queries: list[str], documents: list[str], query_index: list[int],
                 **options: Any) -> Any:
        self.calls.append(len(documents))
        return self.scorer._score_resolved(queries, documents, query_index, **options)


def _requests(n: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(n)
    return [(rng.choice(QUERIES), rng.sample(DOCUMENTS, rng.randint(1, 4))) for _ in range(n)]


async def _submit_all(batcher: MicroBatcher, requests: list[tuple[str, list[str]]],
                      **options: Any) -> list[list[float]]:
    async def one(query: str, docs: list[str]) -> list[float]:
        results = await batcher.submit([query], docs, [0] * len(docs), use_activation=True,
                                       truncate_prompt_tokens=None, **options)
        assert [r.index for r in results] == list(range(len(docs)))
        return [r.score for r in results]

    try:
        return list(await asyncio.gather(*(one(q, d) for q, d in requests)))
    finally:
        await batcher.stop()


@pytest.mark.parametrize("enabled", [True, False])
async def test_concurrent_submissions_share_model_calls(scorer: Scorer, enabled: bool) -> None:
    requests = _requests(10)
    fn = Recording(scorer)
    got = await _submit_all(MicroBatcher(fn, enabled=enabled, max_wait_s=0.5), requests)
    for (query, docs), scores in zip(requests, got, strict=True):
        # Submitted without vLLM's tokenization, so Scorer's own rules apply.
        assert close(scores, [r.score for r in scorer.score(query, docs)])
    # All ten are queued before the collector first runs, so merging is deterministic here.
    assert len(fn.calls) == (1 if enabled else 10)
    assert sum(fn.calls) == sum(len(d) for _, d in requests)


@pytest.mark.parametrize("fixture", ["st_bi_encoder", "colbert_ir"])
async def test_merged_calls_match_local_for_every_score_type(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    # Bi-encoder and late interaction share each distinct query across the merged requests.
    other = Scorer.load(request.getfixturevalue(fixture))
    requests = _requests(12)
    fn = Recording(other)
    got = await _submit_all(MicroBatcher(fn, max_wait_s=0.5), requests)
    assert len(fn.calls) == 1
    # A different batch means different padding; MaxSim sums over many float32 dot products,
    # so it moves by a few 1e-6 (the local engine alone does the same between batch sizes).
    tol = 1e-5 if fixture == "colbert_ir" else TOL
    for (query, docs), scores in zip(requests, got, strict=True):
        assert close(scores, [r.score for r in other.score(query, docs)], tol)


async def test_pair_budget_splits_batches(scorer: Scorer) -> None:
    requests = [("q", ["a", "b", "c"])] * 5
    fn = Recording(scorer)
    await _submit_all(MicroBatcher(fn, max_batch_pairs=7, max_wait_s=0.5), requests)
    assert fn.calls == [6, 6, 3]


async def test_options_split_a_batch_into_groups(scorer: Scorer) -> None:
    fn = Recording(scorer)
    batcher = MicroBatcher(fn, max_wait_s=0.5)

    async def one(use_activation: bool, tpt: int | None) -> list[float]:
        res = await batcher.submit(["q"], ["a", "bb"], [0, 0], use_activation=use_activation,
                                   truncate_prompt_tokens=tpt)
        return [r.score for r in res]

    try:
        got = await asyncio.gather(one(True, None), one(False, None), one(True, None),
                                   one(True, 4))
    finally:
        await batcher.stop()
    assert sorted(fn.calls) == [2, 2, 4]
    assert close(got[1], local(scorer, "q", ["a", "bb"], use_activation=False))
    assert close(got[3], local(scorer, "q", ["a", "bb"], truncate_prompt_tokens=4))
    assert got[0] == got[2]


async def test_a_failing_request_does_not_fail_its_batch(bert_ce: Path) -> None:
    strict = Scorer.load(bert_ce, overflow="error", max_length=16)
    fn = Recording(strict)
    batcher = MicroBatcher(fn, max_wait_s=0.5)

    async def one(doc: str) -> Any:
        try:
            return await batcher.submit(["q"], [doc], [0], use_activation=True,
                                        truncate_prompt_tokens=None)
        except InputTooLongError as exc:
            return exc

    try:
        ok, bad, ok2 = await asyncio.gather(one("short"), one("long " * 40), one("tiny"))
    finally:
        await batcher.stop()
    assert isinstance(bad, InputTooLongError) and "pair 0" in str(bad)
    assert close([ok[0].score], local(strict, "q", ["short"]))
    assert close([ok2[0].score], local(strict, "q", ["tiny"]))
    assert fn.calls == [3, 1, 1, 1]  # merged try, then each alone


def _job(queries: list[str], docs: list[str], index: list[int]) -> Job:
    loop = asyncio.new_event_loop()
    try:
        return Job(queries, docs, index, True, None, loop.create_future())
    finally:
        loop.close()


def test_merge_jobs_shares_queries_and_keeps_offsets() -> None:
    jobs = [_job(["a"], ["x", "y"], [0, 0]), _job(["b", "a"], ["z", "w"], [0, 1]),
            _job(["a"], ["v"], [0])]
    queries, docs, index, offsets = merge_jobs(jobs)
    assert queries == ["a", "b"]
    assert docs == ["x", "y", "z", "w", "v"]
    assert [queries[i] for i in index] == ["a", "a", "b", "a", "a"]
    assert offsets == [0, 2, 4, 5]


def test_take_batch_respects_the_budget_and_runs_a_big_job_alone() -> None:
    import collections

    big = _job(["q"], ["d"] * 10, [0] * 10)
    small = [_job(["q"], ["d"] * 3, [0] * 3) for _ in range(3)]
    pending = collections.deque([big, *small])
    assert take_batch(pending, max_pairs=5, max_tokens=10**6) == [big]
    assert take_batch(pending, max_pairs=5, max_tokens=10**6) == [small[0]]
    assert take_batch(pending, max_pairs=6, max_tokens=10**6) == small[1:]
    assert not pending


async def test_32_clients_x_20_requests_all_answered_correctly(server: ServerThread,
                                                               scorer: Scorer) -> None:
    rng = random.Random(7)
    plans = [[(rng.choice(QUERIES), rng.sample(DOCUMENTS, rng.randint(1, 5)),
               rng.choice(RERANK_ROUTES + SCORE_ROUTES)) for _ in range(20)] for _ in range(32)]
    expected = {(q, tuple(d)): local(scorer, q, d) for plan in plans for q, d, _ in plan}
    before = _metric(httpx.get(server.url + "/metrics").text, "scorer_batched_requests_total")

    async def client(plan: list[tuple[str, list[str], str]]) -> int:
        answered = 0
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as http:
            for query, docs, path in plan:
                if "rerank" in path:
                    r = await http.post(path, json={"query": query, "documents": docs})
                    assert r.status_code == 200, r.text
                    by_index = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
                    scores = [by_index[i] for i in range(len(docs))]
                else:
                    r = await http.post(path, json={"queries": query, "documents": docs})
                    assert r.status_code == 200, r.text
                    scores = [x["score"] for x in r.json()["data"]]
                assert close(scores, expected[(query, tuple(docs))])
                answered += 1
        return answered

    counts = await asyncio.gather(*(client(plan) for plan in plans))
    assert counts == [20] * 32
    after = _metric(httpx.get(server.url + "/metrics").text, "scorer_batched_requests_total")
    assert after - before == 640


# -- graceful shutdown -----------------------------------------------------------------------------
class Gated:
    """A scorer whose model calls wait for a gate, so a request is surely in flight."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.model, self.max_length, self.score_type = inner.model, inner.max_length, \
            inner.score_type
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _score_resolved(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.gate.wait(60)
        return self.inner._score_resolved(*args, **kwargs)


def test_shutdown_finishes_in_flight_and_queued_requests(scorer: Scorer) -> None:
    gated = Gated(scorer)
    app = create_app(gated)  # type: ignore[arg-type]
    answers: dict[str, httpx.Response] = {}

    def send(name: str, docs: list[str]) -> None:
        answers[name] = httpx.post(srv.url + "/rerank", json={"query": "q", "documents": docs},
                                   timeout=60)

    with ServerThread(app) as srv:
        first = threading.Thread(target=send, args=("first", DOCUMENTS[:3]))
        first.start()
        assert gated.entered.wait(30)  # the first request is inside the model
        second = threading.Thread(target=send, args=("second", DOCUMENTS[3:]))
        second.start()
        for _ in range(3000):  # bounded: until the second request is queued too
            if app.state.metrics.in_flight == 2:
                break
            time.sleep(0.01)
        assert app.state.metrics.in_flight == 2
        srv.stop()
        for _ in range(3000):  # bounded: until the listener is closed
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the server kept accepting connections after shutdown began")
        gated.gate.set()
        first.join(60)
        second.join(60)
    for name, docs in (("first", DOCUMENTS[:3]), ("second", DOCUMENTS[3:])):
        assert answers[name].status_code == 200
        got = {x["index"]: x["relevance_score"] for x in answers[name].json()["results"]}
        assert close([got[i] for i in range(len(docs))], local(scorer, "q", docs))
    assert not srv.thread.is_alive()


# -- the command -----------------------------------------------------------------------------------
def test_serve_is_a_subcommand() -> None:
    from engine.cli import build_parser

    args = build_parser().parse_args(["serve", "some/model", "--port", "9001", "--api-key", "k",
                                      "--served-model-name", "n", "--no-batching"])
    assert (args.model, args.port, args.api_key, args.served_model_name, args.batching,
            args.host) == ("some/model", 9001, "k", "n", False, "127.0.0.1")


def test_serve_without_the_extra_names_it() -> None:
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "uvicorn"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from engine.cli import main
sys.exit(main(["serve", "no/such/model"]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "pip install 'scorer[server]'" in out.stderr


def test_scorer_serve_end_to_end(bert_ce: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("VLLM_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", str(bert_ce), "--port", str(port),
         "--api-key", KEY, "--served-model-name", "cli-ce", "--log-level", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(1200):  # bounded wait for start-up
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        r = httpx.post(f"http://127.0.0.1:{port}/v2/rerank", headers=AUTH, timeout=30,
                       json={"query": "q", "documents": ["a", "b"]})
        assert r.status_code == 200 and r.json()["model"] == "cli-ce"
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down gracefully
        _, err = proc.communicate(timeout=60)
    # uvicorn shuts down, then re-raises the signal it caught: -15 is its normal exit.
    assert proc.returncode in (0, -15), err
    assert "Application shutdown complete" in err and "Traceback" not in err
    assert "serving" in err and KEY not in err


@pytest.mark.parametrize(("path", "body"), [
    ("/score", {"model": "BAAI/bge-reranker-v2-m3", "encoding_format": "float",
                "text_1": "What is the capital of France?",
                "text_2": "The capital of France is Paris."}),
    ("/v1/score", {"model": "BAAI/bge-reranker-v2-m3", "text_1": "What is the capital of France?",
                   "text_2": ["The capital of Brazil is Brasilia.",
                              "The capital of France is Paris."]}),
    ("/rerank", {"model": "BAAI/bge-reranker-base", "query": "What is the capital of France?",
                 "documents": ["The capital of Brazil is Brasilia.",
                               "The capital of France is Paris.",
                               "Horses and cows are both animals"]}),
])
def test_vllm_docs_curl_examples_work_unchanged(scorer: Scorer, path: str,
                                                body: dict[str, Any]) -> None:
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    # Served under the docs' model name, as `vllm serve BAAI/...` would be (another name is
    # a 404, as in vLLM).
    app = create_app(scorer, ServerConfig(served_model_name=body["model"], api_key=KEY))
    with ServerThread(app) as server:
        out = subprocess.run(
            ["curl", "-s", "-X", "POST", server.url + path, "-H", "accept: application/json",
             "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {KEY}",
             "-d", json.dumps(body)],
            capture_output=True, text=True, timeout=60, check=True,
        )
    answer = json.loads(out.stdout)
    if "rerank" in path:
        want = scorer.rerank(body["query"], body["documents"])
        assert [x["index"] for x in answer["results"]] == [w.index for w in want]
    else:
        want_scores = local(scorer, body["text_1"], body["text_2"])
        assert close([x["score"] for x in answer["data"]], want_scores)


@pytest.mark.parametrize("fixture", ["st_bi_encoder", "colbert_ir"])
def test_usage_counts_each_query_and_document_once_for_embedding_scores(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    # vLLM encodes each entry of text_1 and of text_2 once: a 1:N request counts its query once,
    # an N:N request each query of the list (a cross-encoder, above, counts one prompt per pair).
    other = Scorer.load(request.getfixturevalue(fixture))
    local_results = other.score(QUERIES[0], DOCUMENTS)
    q = local_results[0].query_tokens
    assert q is not None and all(r.query_tokens == q for r in local_results)
    documents = sum(r.num_tokens - q for r in local_results)
    app = create_app(other, ServerConfig(served_model_name="tiny", api_key=KEY))
    with ServerThread(app) as running:
        one_to_n = post(running.url, "/score", {"text_1": QUERIES[0], "text_2": DOCUMENTS})
        assert one_to_n.status_code == 200, one_to_n.text
        assert one_to_n.json()["usage"]["prompt_tokens"] == q + documents
        ranked = post(running.url, "/rerank", {"query": QUERIES[0], "documents": DOCUMENTS})
        assert ranked.json()["usage"] == {"prompt_tokens": q + documents,
                                          "total_tokens": q + documents}
        pairs = post(running.url, "/score", {"text_1": QUERIES, "text_2": DOCUMENTS[:2]})
        want = sum(r.num_tokens for r in other.score(QUERIES, DOCUMENTS[:2]))
        assert pairs.json()["usage"]["prompt_tokens"] == want
