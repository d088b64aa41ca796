"""RemoteScorer against a loopback fake of each API that answers in the flavour's own shape and
injects faults: 429 with Retry-After, 500 then success, timeouts, malformed JSON, shuffled and
out-of-range indices, 413/422 over the cap, 401. Sync and async paths are mirrored."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine import InputError, RemoteScoreError, RemoteScorer
from engine.remote.driver import HttpDriver, RetryPolicy

FAST = {"retry_backoff": 0.001, "timeout": 5.0}  # tiny backoffs keep the suite fast
KEY = "sk-test-0123456789-secret"


def fake_score(query: str, document: str) -> float:
    """A deterministic stand-in for a model: distinct per (query, document)."""
    return (sum(map(ord, query + "|" + document)) % 997) / 997


def flavour_body(api: str, query: Any, documents: list[str]) -> Any:
    """An answer in ``api``'s own shape (spec §1.4, 1.5, 8), sorted as that server sorts."""
    if api == "vllm-score":
        queries = query if isinstance(query, list) else [query] * len(documents)
        return {"id": "score-x", "object": "list", "created": 0, "model": "m",
                "data": [{"index": i, "object": "score", "score": fake_score(q, d)}
                         for i, (q, d) in enumerate(zip(queries, documents, strict=True))],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    ranked = sorted(range(len(documents)), key=lambda i: -fake_score(query, documents[i]))
    if api == "tei":
        return [{"index": i, "score": fake_score(query, documents[i])} for i in ranked]
    rows = [{"index": i, "relevance_score": fake_score(query, documents[i])} for i in ranked]
    if api == "vllm-rerank":
        for row in rows:
            row["document"] = {"text": documents[row["index"]], "multi_modal": None}
        return {"id": "score-x", "model": "m", "usage": {"total_tokens": 3}, "results": rows}
    if api == "infinity":
        for row in rows:
            row["document"] = documents[row["index"]]
        return {"object": "rerank", "id": "infinity-x", "created": 0, "model": "m",
                "usage": {"prompt_tokens": 1, "total_tokens": 1}, "results": rows}
    if api == "cohere":
        return {"id": "c", "results": rows, "meta": {"billed_units": {"search_units": 1}}}
    return {"model": "m", "usage": {"total_tokens": 3}, "results": rows}  # jina


def request_docs(api: str, payload: dict[str, Any]) -> tuple[Any, list[str]]:
    if api == "vllm-score":
        docs = payload["text_2"]
        return payload["text_1"], docs if isinstance(docs, list) else [docs]
    return payload["query"], payload["texts" if api == "tei" else "documents"]


class FakeApi(ThreadingHTTPServer):
    """A loopback server speaking one flavour. ``faults`` are consumed one per request."""

    daemon_threads = True

    def __init__(self, api: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self.faults: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.cap: int | None = None
        self.required_key: str | None = None
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()  # ends a "hang" fault early at teardown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout tests)

    def do_POST(self) -> None:  # noqa: N802
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        payload = json.loads(raw)
        with srv.lock:
            srv.requests.append({"path": self.path, "headers": dict(self.headers),
                                 "payload": payload})
            fault = srv.faults.popleft() if srv.faults else {}
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._answer(srv, payload, fault)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, srv: FakeApi, payload: dict[str, Any], fault: dict[str, Any]) -> None:
        if srv.required_key is not None and \
                self.headers.get("Authorization") != f"Bearer {srv.required_key}":
            self._send(401, json.dumps({"message": "invalid api token"}).encode())
            return
        if "hang" in fault:
            srv.release.wait(fault["hang"])
        if "status" in fault:
            self._send(fault["status"], fault.get("body", b""), fault.get("headers"))
            return
        query, docs = request_docs(srv.api, payload)
        if srv.cap is not None and len(docs) > srv.cap:
            if srv.api == "tei":
                message = {"error": f"batch size {len(docs)} > maximum allowed batch size "
                                    f"{srv.cap}", "error_type": "validation"}
                self._send(422, json.dumps(message).encode())
            else:
                self._send(413, json.dumps({"error": {
                    "message": f"{len(docs)} documents is over the limit of {srv.cap}",
                    "type": "PayloadTooLargeError", "param": None, "code": 413}}).encode())
            return
        body = flavour_body(srv.api, query, docs)
        if "mutate" in fault:
            body = fault["mutate"](body)
        self._send(200, fault.get("raw", json.dumps(body).encode()))


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeApi]:
    server = FakeApi(getattr(request, "param", "vllm-rerank"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def remote_for(fake: FakeApi, **kwargs: Any) -> RemoteScorer:
    options = {"model": "m" if fake.api in ("cohere", "jina") else None, **FAST, **kwargs}
    return RemoteScorer(fake.url, api=fake.api, **options)


def expected(query: str | list[str], docs: list[str]) -> list[float]:
    queries = query if isinstance(query, list) else [query] * len(docs)
    return [fake_score(q, d) for q, d in zip(queries, docs, strict=True)]


DOCS = [f"document number {i} about {'cats' if i % 3 else 'dogs'}" for i in range(11)]
FLAVOURS = ["vllm-score", "vllm-rerank", "cohere", "jina", "tei", "infinity"]


# -- every flavour: shuffled answers, chunking, merging --------------------------------------------
@pytest.mark.parametrize("fake", FLAVOURS, indirect=True)
def test_chunks_to_the_cap_and_merges_in_caller_order(fake: FakeApi) -> None:
    fake.cap = 4
    remote = remote_for(fake, max_batch_size=4, max_concurrency=3)
    results = remote.score("what about dogs", DOCS)
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert [r.score for r in results] == expected("what about dogs", DOCS)
    sent = [request_docs(fake.api, r["payload"])[1] for r in fake.requests]
    assert sorted(len(s) for s in sent) == [3, 4, 4]
    assert sorted(d for s in sent for d in s) == sorted(DOCS)
    assert all(r["path"] == remote.path for r in fake.requests)
    assert fake.max_in_flight <= 3


@pytest.mark.parametrize("fake", FLAVOURS, indirect=True)
async def test_async_chunks_to_the_cap_and_merges_in_caller_order(fake: FakeApi) -> None:
    fake.cap = 4
    async with remote_for(fake, max_batch_size=4, max_concurrency=2) as remote:
        results = await remote.ascore("what about dogs", DOCS)
    assert [r.score for r in results] == expected("what about dogs", DOCS)
    assert len(fake.requests) == 3
    assert fake.max_in_flight <= 2


@pytest.mark.parametrize("fake", FLAVOURS, indirect=True)
def test_n_to_n_and_rerank_through_every_flavour(fake: FakeApi) -> None:
    queries = ["q one", "q two", "q one", "q three"]
    docs = DOCS[:4]
    remote = remote_for(fake)
    assert [r.score for r in remote.score(queries, docs)] == expected(queries, docs)
    ranked = remote.rerank("q one", DOCS, top_n=3)
    want = sorted(range(len(DOCS)), key=lambda i: -fake_score("q one", DOCS[i]))[:3]
    assert [r.index for r in ranked] == want
    assert [r.document for r in ranked] == [DOCS[i] for i in want]


@pytest.mark.parametrize("fake", ["tei"], indirect=True)
def test_tei_default_cap_is_32(fake: FakeApi) -> None:
    fake.cap = 32
    docs = [f"d{i}" for i in range(70)]
    results = remote_for(fake).score("q", docs)
    assert [r.score for r in results] == expected("q", docs)
    assert sorted(len(r["payload"]["texts"]) for r in fake.requests) == [6, 32, 32]


# -- retries ---------------------------------------------------------------------------------------
def test_429_then_success_is_retried(fake: FakeApi) -> None:
    fake.faults.append({"status": 429, "headers": {"Retry-After": "0"},
                        "body": b'{"error": {"message": "slow down"}}'})
    assert [r.score for r in remote_for(fake).score("q", DOCS[:3])] == expected("q", DOCS[:3])
    assert len(fake.requests) == 2


def test_retry_after_is_honoured(fake: FakeApi) -> None:
    waits: list[float] = []
    fake.faults.extend([{"status": 429, "headers": {"Retry-After": "3"}},
                        {"status": 503, "headers": {"Retry-After": "1"}}])
    driver = HttpDriver(fake.url, api="vllm-rerank", policy=RetryPolicy(max_retries=3),
                        sleep=waits.append)
    body = driver.post("/rerank", {"query": "q", "documents": ["a"]})
    assert body["results"][0]["index"] == 0
    assert waits == [3.0, 1.0]


async def test_retry_after_is_honoured_async(fake: FakeApi) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    fake.faults.append({"status": 429, "headers": {"Retry-After": "2"}})
    driver = HttpDriver(fake.url, api="vllm-rerank", policy=RetryPolicy(max_retries=1),
                        async_sleep=record)
    body = await driver.apost("/rerank", {"query": "q", "documents": ["a"]})
    assert body["results"][0]["index"] == 0 and waits == [2.0]
    await driver.aclose()


def test_retry_after_longer_than_allowed_fails_at_once(fake: FakeApi) -> None:
    fake.faults.append({"status": 429, "headers": {"Retry-After": "3600"}})
    with pytest.raises(RemoteScoreError, match="retry after 3600s") as info:
        remote_for(fake, max_retry_wait=10).score("q", ["a"])
    assert info.value.status_code == 429 and len(fake.requests) == 1


def test_500_then_success(fake: FakeApi) -> None:
    fake.faults.append({"status": 500, "body": b'{"error": {"message": "boom"}}'})
    assert [r.score for r in remote_for(fake).score("q", ["a", "b"])] == expected("q", ["a", "b"])
    assert len(fake.requests) == 2


async def test_500_then_success_async(fake: FakeApi) -> None:
    fake.faults.extend([{"status": 502}, {"status": 500}])
    remote = remote_for(fake)
    assert [r.score for r in await remote.ascore("q", ["a"])] == expected("q", ["a"])
    assert len(fake.requests) == 3
    await remote.aclose()


def test_persistent_500_gives_up_with_status_and_server_message(fake: FakeApi) -> None:
    for _ in range(3):
        fake.faults.append({"status": 500, "body": json.dumps(
            {"error": {"message": "CUDA out of memory", "type": "InternalServerError",
                       "param": None, "code": 500}}).encode()})
    with pytest.raises(RemoteScoreError, match="gave up after 3 attempts") as info:
        remote_for(fake, max_retries=2).score("q", ["a"])
    assert info.value.status_code == 500
    assert info.value.server_message == "CUDA out of memory"
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 422, 501])
def test_other_errors_are_not_retried(fake: FakeApi, status: int) -> None:
    fake.faults.append({"status": status, "body": b'{"error": {"message": "nope"}}'})
    with pytest.raises(RemoteScoreError, match=f"HTTP {status}") as info:
        remote_for(fake).score("q", ["a"])
    assert info.value.status_code == status and info.value.server_message == "nope"
    assert len(fake.requests) == 1


def test_404_hints_at_base_url_and_path(fake: FakeApi) -> None:
    fake.faults.append({"status": 404, "body": b'{"detail": "Not Found"}'})
    with pytest.raises(RemoteScoreError, match="base_url is the server root.*path="):
        remote_for(fake).score("q", ["a"])


def test_timeout_is_retried_then_succeeds(fake: FakeApi) -> None:
    fake.faults.append({"hang": 5})
    remote = remote_for(fake, timeout=0.3, max_retries=1)
    assert [r.score for r in remote.score("q", ["a"])] == expected("q", ["a"])
    assert len(fake.requests) == 2


async def test_timeouts_give_up_with_no_status(fake: FakeApi) -> None:
    fake.faults.extend([{"hang": 5}, {"hang": 5}])
    remote = remote_for(fake, timeout=0.3, max_retries=1)
    with pytest.raises(RemoteScoreError, match="timed out after 0.3s") as info:
        await remote.ascore("q", ["a"])
    assert info.value.status_code is None
    await remote.aclose()


def test_connection_refused_is_a_remote_error() -> None:
    remote = RemoteScorer("http://127.0.0.1:9", api="vllm-rerank", max_retries=1, **FAST)
    with pytest.raises(RemoteScoreError, match="could not be sent") as info:
        remote.score("q", ["a"])
    assert info.value.status_code is None


# -- malformed answers -----------------------------------------------------------------------------
@pytest.mark.parametrize("fake", FLAVOURS, indirect=True)
def test_malformed_json_is_an_error_not_retried(fake: FakeApi) -> None:
    fake.faults.append({"raw": b'{"results": [{"index": 0, "relevance_sc'})
    with pytest.raises(RemoteScoreError, match="not JSON") as info:
        remote_for(fake).score("q", ["a", "b"])
    assert info.value.status_code == 200 and len(fake.requests) == 1


def _shift_indices(body: Any) -> Any:
    rows = body if isinstance(body, list) else body.get("data", body.get("results"))
    for row in rows:
        row["index"] += 1
    return body


@pytest.mark.parametrize("fake", FLAVOURS, indirect=True)
def test_out_of_range_index_is_an_error(fake: FakeApi) -> None:
    fake.faults.append({"mutate": _shift_indices})
    with pytest.raises(RemoteScoreError, match="out of range for 3 documents"):
        remote_for(fake).score("q", ["a", "b", "c"])


@pytest.mark.parametrize("fake", ["vllm-rerank", "tei"], indirect=True)
async def test_short_answer_is_an_error_async(fake: FakeApi) -> None:
    def drop_last(body: Any) -> Any:
        rows = body if isinstance(body, list) else body["results"]
        rows.pop()
        return body

    fake.faults.append({"mutate": drop_last})
    remote = remote_for(fake)
    with pytest.raises(RemoteScoreError, match="expected 3 results, got 2"):
        await remote.ascore("q", ["a", "b", "c"])
    await remote.aclose()


def test_one_failing_chunk_fails_the_call(fake: FakeApi) -> None:
    fake.faults.extend([{}, {"status": 400, "body": b'{"error": {"message": "bad chunk"}}'}])
    with pytest.raises(RemoteScoreError, match="bad chunk"):
        remote_for(fake, max_batch_size=2, max_concurrency=1).score("q", DOCS[:6])


# -- limits ----------------------------------------------------------------------------------------
def test_413_over_the_cap_says_to_lower_max_batch_size(fake: FakeApi) -> None:
    fake.cap = 4
    with pytest.raises(RemoteScoreError, match="Lower max_batch_size") as info:
        remote_for(fake).score("q", DOCS)
    assert info.value.status_code == 413 and len(fake.requests) == 1
    assert [r.score for r in remote_for(fake, max_batch_size=4).score("q", DOCS)] == \
        expected("q", DOCS)


@pytest.mark.parametrize("fake", ["tei"], indirect=True)
def test_tei_422_batch_size_says_to_lower_max_batch_size(fake: FakeApi) -> None:
    fake.cap = 2
    with pytest.raises(RemoteScoreError, match="batch size 11 > maximum.*Lower max_batch_size"):
        remote_for(fake, max_batch_size=11).score("q", DOCS)


# -- the API key -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fake", ["cohere"], indirect=True)
def test_key_from_argument_is_sent_and_never_shown(fake: FakeApi, caplog: pytest.LogCaptureFixture
                                                   ) -> None:
    fake.required_key = KEY
    fake.faults.append({"status": 503})  # a retry, so a log line is written
    caplog.set_level(logging.DEBUG)
    remote = remote_for(fake, api_key=KEY)
    assert [r.score for r in remote.score("q", ["a"])] == expected("q", ["a"])
    assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(remote) and KEY not in repr(remote._driver)
    assert KEY not in repr(vars(remote._driver))
    assert caplog.records and all(KEY not in r.getMessage() for r in caplog.records)
    wrong = remote_for(fake, api_key="sk-wrong-key-777")
    with pytest.raises(RemoteScoreError) as info:
        wrong.score("q", ["a"])
    assert info.value.status_code == 401 and "A key was sent" in str(info.value)
    assert "sk-wrong-key-777" not in str(info.value) and KEY not in str(info.value)


@pytest.mark.parametrize(("fake", "env"), [("cohere", "COHERE_API_KEY"), ("jina", "JINA_API_KEY"),
                                           ("vllm-score", "VLLM_API_KEY"),
                                           ("tei", "TEI_API_KEY"),
                                           ("infinity", "INFINITY_API_KEY")],
                         indirect=["fake"])
def test_key_from_the_flavours_environment_variable(fake: FakeApi, env: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env, KEY)
    fake.required_key = KEY
    assert [r.score for r in remote_for(fake).score("q", ["a"])] == expected("q", ["a"])
    monkeypatch.delenv(env)
    with pytest.raises(RemoteScoreError, match=f"A key was not set; check api_key= or the {env}"):
        remote_for(fake).score("q", ["a"])


def test_no_key_sends_no_authorization_header(fake: FakeApi, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    remote_for(fake).score("q", ["a"])
    assert "Authorization" not in fake.requests[0]["headers"]


# -- options reach the wire ------------------------------------------------------------------------
@pytest.mark.parametrize("fake", ["vllm-rerank"], indirect=True)
def test_vllm_options_are_sent(fake: FakeApi) -> None:
    remote_for(fake, model="served").score("q", ["a"], use_activation=False,
                                           truncate_prompt_tokens=64)
    assert fake.requests[0]["payload"] == {"query": "q", "documents": ["a"], "model": "served",
                                           "use_activation": False, "truncate_prompt_tokens": 64}


@pytest.mark.parametrize("fake", ["jina"], indirect=True)
def test_unmappable_option_is_refused_before_sending(fake: FakeApi) -> None:
    with pytest.raises(InputError, match="jina"):
        remote_for(fake).score("q", ["a"], truncate_prompt_tokens=10)
    assert fake.requests == []


def test_async_client_survives_a_new_event_loop(fake: FakeApi) -> None:
    import asyncio

    remote = remote_for(fake)
    for _ in range(2):  # two asyncio.run calls: the second must not reuse the dead loop's pool
        results = asyncio.run(remote.ascore("q", ["a", "b"]))
        assert [r.score for r in results] == expected("q", ["a", "b"])
