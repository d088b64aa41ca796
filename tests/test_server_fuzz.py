"""The server under generated and hostile input: never a 500, never a hang, never a lost or
mis-assigned answer.

- a schema-driven fuzz of the request JSON (the fields of /score and /rerank with values of
  every JSON type, and arbitrary JSON documents) against the in-process app;
- a bounded load test: 32 concurrent clients sending a mix of valid and invalid requests to a
  real ``scorer serve`` process over loopback.
"""

from __future__ import annotations

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
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Scorer

ROOT = Path(__file__).resolve().parent.parent
ERROR_KEYS = {"message", "type", "param", "code"}

# -- schema-driven request bodies ---------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(
    allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=30)
text_or_list = texts | st.lists(texts, max_size=5)
# Each field: a well-typed value, or any JSON value at all.
FIELDS: dict[str, Any] = {
    "model": texts,
    "truncate_prompt_tokens": st.integers(-3, 10**6),
    "use_activation": st.booleans(),
    "top_n": st.integers(-2, 50),
    "softmax": st.booleans(),
    "raw_scores": st.booleans(),
    "request_id": texts,
    "priority": st.integers(-5, 5),
    "padding": st.sampled_from(["max_length", "do_not_pad", "longest"]),
    "truncation_side": st.sampled_from(["left", "right", "middle"]),
    "max_tokens_per_query": st.integers(-2, 10**4),
    "max_tokens_per_doc": st.integers(-2, 10**4),
    "instruction": texts,
    "chat_template_kwargs": st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
    "mm_processor_kwargs": st.dictionaries(st.text(max_size=8), json_scalars, max_size=2),
    "cache_salt": texts,
}
SIDES = {"/score": ["queries", "documents", "items", "data_1", "data_2", "text_1", "text_2"],
         "/rerank": ["query", "documents"]}


@st.composite
def bodies(draw: st.DrawFn, route: str) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even an object, sometimes
    body: dict[str, Any] = {}
    for side in draw(st.lists(st.sampled_from(SIDES[route]), max_size=3, unique=True)):
        body[side] = draw(text_or_list | json_values)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4, unique=True)):
        body[name] = draw(FIELDS[name] | json_values)
    return body


@pytest.fixture(scope="module")
def client(bert_ce: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from engine.server import create_app

    with TestClient(create_app(Scorer.load(bert_ce, max_length=64), batch_wait_ms=0)) as c:
        yield c


def _check_answer(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert "error" in body and set(body["error"]) == ERROR_KEYS, body


@settings(max_examples=60)
@given(data=st.data())
def test_generated_requests_never_get_a_500(client: Any, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(["/score", "/rerank", "/v1/score", "/v2/rerank"]))
    body = data.draw(bodies("/score" if "score" in route else "/rerank"))
    response = client.post(route, content=json.dumps(body).encode(),
                           headers={"content-type": "application/json"})
    _check_answer(response)


@settings(max_examples=30)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_get_a_500(client: Any, raw: bytes) -> None:
    _check_answer(client.post("/score", content=raw,
                              headers={"content-type": "application/json"}))


# -- load: 32 concurrent clients against a real `scorer serve` ----------------------------------
@pytest.fixture(scope="module")
def served(bert_ce: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("VLLM_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", str(bert_ce), "--port", str(port),
         "--max-length", "64", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


WORDS = "paris france capital vitamin scurvy sailors berlin fox dog ranking function".split()
INVALID: list[tuple[str, bytes]] = [
    ("/score", b'{"queries": ["a", "b"], "documents": ["x", "y", "z"]}'),  # pairing
    ("/rerank", b'{"query": "q", "documents": []}'),
    ("/score", b'{"queries": "q"}'),
    ("/rerank", b'{"query": "q", "documents": ["a"], "top_n": -1}'),
    ("/score", b'{"queries": "q", "documents": "\\ud800"}'),  # lone surrogate
    ("/score", b'{"queries": "q", "documents": ["a"], "truncate_prompt_tokens": 2}'),
    ("/score", b"{not json"),
    ("/rerank", b'{"query": {"content": [{"type": "text", "text": "q"}]}, "documents": ["a"]}'),
]


def test_32_concurrent_clients_lose_nothing_and_mix_nothing_up(
    served: str, bert_ce: Path
) -> None:
    reference = Scorer.load(bert_ce, max_length=64)
    rng = random.Random(7)
    plans: list[list[tuple[str, bytes, list[tuple[str, str]] | None]]] = []
    for _ in range(32):
        plan = []
        for _ in range(6):
            if rng.random() < 0.35:
                route, raw = rng.choice(INVALID)
                plan.append((route, raw, None))
                continue
            query = " ".join(rng.sample(WORDS, 3))
            docs = [" ".join(rng.sample(WORDS, rng.randint(1, 6)))
                    for _ in range(rng.randint(1, 9))]
            if rng.random() < 0.5:
                raw = json.dumps({"queries": query, "documents": docs}).encode()
                plan.append(("/score", raw, [(query, d) for d in docs]))
            else:
                raw = json.dumps({"query": query, "documents": docs}).encode()
                plan.append(("/rerank", raw, [(query, d) for d in docs]))
        plans.append(plan)
    answers: list[list[httpx.Response | BaseException]] = [[] for _ in plans]

    def client(k: int) -> None:
        with httpx.Client(base_url=served, timeout=60) as http:
            for route, raw, _ in plans[k]:
                try:
                    answers[k].append(http.post(route, content=raw,
                                                headers={"content-type": "application/json"}))
                except Exception as exc:  # a lost request
                    answers[k].append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    lost = mixed = 0
    for plan, got in zip(plans, answers, strict=True):
        assert len(got) == len(plan)
        for (route, _, pairs), response in zip(plan, got, strict=True):
            if isinstance(response, BaseException):
                lost += 1
                continue
            if pairs is None:
                assert 400 <= response.status_code < 500, response.text
                assert set(response.json()["error"]) == ERROR_KEYS
                continue
            assert response.status_code == 200, response.text
            want = [r.score for r in reference.score(pairs[0][0], [d for _, d in pairs])]
            if route == "/score":
                got_scores = [x["score"] for x in sorted(response.json()["data"],
                                                         key=lambda x: x["index"])]
            else:
                by_index = {x["index"]: x["relevance_score"] for x in response.json()["results"]}
                got_scores = [by_index[i] for i in range(len(pairs))]
            mixed += sum(abs(a - b) > 1e-5 for a, b in zip(got_scores, want, strict=True))
    assert lost == 0 and mixed == 0
