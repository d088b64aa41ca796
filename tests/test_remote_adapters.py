"""Remote-mode pure parts: each flavour's adapter against response bodies recorded from the
spec (§1.4, §1.5, §8), request planning and merging, and the retry arithmetic. No network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine import InputError, RemoteScoreError, ScoreResult
from engine.remote.adapters import (
    ADAPTERS,
    RemoteCall,
    collect_results,
    get_adapter,
    server_message,
)
from engine.remote.driver import RetryPolicy, backoff_delay, retry_after_seconds, should_retry
from engine.remote.scorer import RemoteConfig, RemoteScorer, merge_chunks, plan_chunks

DOCS = ["Paris is in France.", "Berlin is in Germany.", "The capital of France is Paris."]
CALL = RemoteCall(query="What is the capital of France?", documents=DOCS, model="m")

# Bodies in each API's own shape, sorted best first as the servers do (index 2 > 0 > 1).
RECORDED = {
    "vllm-score": {
        "id": "score-abc", "object": "list", "created": 1733333333, "model": "m",
        "data": [{"index": 0, "object": "score", "score": 0.5},
                 {"index": 1, "object": "score", "score": 0.125},
                 {"index": 2, "object": "score", "score": 0.998}],
        "usage": {"prompt_tokens": 42, "total_tokens": 42, "completion_tokens": 0,
                  "prompt_tokens_details": None, "completion_tokens_details": None},
    },
    "vllm-rerank": {
        "id": "score-abc", "model": "m", "usage": {"prompt_tokens": 56, "total_tokens": 56},
        "results": [
            {"index": 2, "document": {"text": DOCS[2], "multi_modal": None},
             "relevance_score": 0.998},
            {"index": 0, "document": {"text": DOCS[0], "multi_modal": None},
             "relevance_score": 0.5},
            {"index": 1, "document": {"text": DOCS[1], "multi_modal": None},
             "relevance_score": 0.125},
        ],
    },
    "cohere": {
        "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
        "results": [{"index": 2, "relevance_score": 0.998}, {"index": 0, "relevance_score": 0.5},
                    {"index": 1, "relevance_score": 0.125}],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    },
    "jina": {
        "model": "jina-reranker-v2-base-multilingual", "usage": {"total_tokens": 38},
        "results": [{"index": 2, "document": {"text": DOCS[2]}, "relevance_score": 0.998},
                    {"index": 0, "document": {"text": DOCS[0]}, "relevance_score": 0.5},
                    {"index": 1, "document": {"text": DOCS[1]}, "relevance_score": 0.125}],
    },
    "tei": [{"index": 2, "score": 0.998}, {"index": 0, "score": 0.5},
            {"index": 1, "score": 0.125}],
    "infinity": {
        "object": "rerank", "model": "m", "id": "infinity-7d1f", "created": 1733333333,
        "usage": {"prompt_tokens": 30, "total_tokens": 30},
        "results": [{"relevance_score": 0.998, "index": 2, "document": DOCS[2]},
                    {"relevance_score": 0.5, "index": 0, "document": DOCS[0]},
                    {"relevance_score": 0.125, "index": 1, "document": DOCS[1]}],
    },
}
EXPECTED = [0.5, 0.125, 0.998]


def _rows(body: object) -> list:
    if isinstance(body, list):
        return body
    assert isinstance(body, dict)
    return body["data"] if "data" in body else body["results"]


def _with_rows(api: str, rows: list) -> object:
    body = RECORDED[api]
    if isinstance(body, list):
        return rows
    key = "data" if "data" in body else "results"
    return {**body, key: rows}


@pytest.mark.parametrize("api", sorted(ADAPTERS))
def test_recorded_body_maps_by_index_not_position(api: str) -> None:
    results = get_adapter(api).parse_response(RECORDED[api], CALL)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.score for r in results] == EXPECTED
    assert all(isinstance(r.score, float) for r in results)


@pytest.mark.parametrize("api", sorted(ADAPTERS))
def test_reversed_rows_give_the_same_scores(api: str) -> None:
    body = _with_rows(api, list(reversed(_rows(RECORDED[api]))))
    assert [r.score for r in get_adapter(api).parse_response(body, CALL)] == EXPECTED


@pytest.mark.parametrize("api", sorted(ADAPTERS))
@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda rows: rows[:2], "expected 3 results, got 2"),
        (lambda rows: rows + [dict(rows[0])], "appears more than once"),
        (lambda rows: [{**rows[0], "index": 3}, *rows[1:]], "out of range"),
        (lambda rows: [{**rows[0], "index": -1}, *rows[1:]], "out of range"),
        (lambda rows: [{**rows[0], "index": "2"}, *rows[1:]], "not an integer"),
        (lambda rows: [{**rows[0], "index": True}, *rows[1:]], "not an integer"),
        (lambda rows: [{k: v for k, v in rows[0].items() if k != "index"}, *rows[1:]], "lacks"),
    ],
    ids=["missing", "duplicate", "too-large", "negative", "string", "bool", "no-index"],
)
def test_mismatched_response_is_an_error(api: str, mutate, needle: str) -> None:
    body = _with_rows(api, mutate([dict(r) for r in _rows(RECORDED[api])]))
    with pytest.raises(RemoteScoreError, match=needle):
        get_adapter(api).parse_response(body, CALL)


@pytest.mark.parametrize("api", sorted(ADAPTERS))
def test_non_numeric_score_and_wrong_container_are_errors(api: str) -> None:
    adapter = get_adapter(api)
    rows = [dict(r) for r in _rows(RECORDED[api])]
    key = "score" if api in ("vllm-score", "tei") else "relevance_score"
    rows[1][key] = "0.3"
    with pytest.raises(RemoteScoreError, match="not a number"):
        adapter.parse_response(_with_rows(api, rows), CALL)
    wrong = {"unexpected": []} if api == "tei" else []
    with pytest.raises(RemoteScoreError, match="does not match"):
        adapter.parse_response(wrong, CALL)


def test_payloads_use_each_flavours_field_names() -> None:
    call = RemoteCall(query="q", documents=["a", "b"], model="m", use_activation=False,
                      truncate_prompt_tokens=-1)
    assert get_adapter("vllm-score").build_payload(call) == {
        "text_1": "q", "text_2": ["a", "b"], "model": "m", "use_activation": False,
        "truncate_prompt_tokens": -1}
    assert get_adapter("vllm-rerank").build_payload(call) == {
        "query": "q", "documents": ["a", "b"], "model": "m", "use_activation": False,
        "truncate_prompt_tokens": -1}
    assert get_adapter("tei").build_payload(call) == {
        "query": "q", "texts": ["a", "b"], "return_text": False, "raw_scores": True,
        "truncate": True}
    plain = RemoteCall(query="q", documents=["a", "b"], model="m")
    assert get_adapter("cohere").build_payload(plain) == {
        "model": "m", "query": "q", "documents": ["a", "b"]}
    assert get_adapter("cohere").build_payload(
        RemoteCall(query="q", documents=["a"], model="m", truncate_prompt_tokens=128)
    )["max_tokens_per_doc"] == 128
    assert get_adapter("jina").build_payload(plain) == {
        "model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2,
        "return_documents": False}
    assert get_adapter("infinity").build_payload(
        RemoteCall(query="q", documents=["a"], use_activation=False)
    ) == {"query": "q", "documents": ["a"], "return_documents": False, "raw_scores": True}


@pytest.mark.parametrize(
    ("api", "options", "needle"),
    [
        ("cohere", {"use_activation": False}, "raw logits"),
        ("jina", {"use_activation": False}, "raw logits"),
        ("jina", {"truncate_prompt_tokens": 100}, "no truncation field"),
        ("infinity", {"truncate_prompt_tokens": -1}, "no truncation field"),
        ("tei", {"truncate_prompt_tokens": 100}, "truncate_prompt_tokens=-1"),
    ],
)
def test_options_an_api_cannot_honour_are_refused(api: str, options: dict, needle: str) -> None:
    options = {"use_activation": None, "truncate_prompt_tokens": None, **options}
    with pytest.raises(InputError, match=needle):
        get_adapter(api).options(**options)


def test_unknown_api_lists_the_flavours() -> None:
    with pytest.raises(InputError, match="'vllm-score', 'vllm-rerank', 'cohere'"):
        get_adapter("openai")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad top_n", "type": "BadRequestError", "param": None,
                    "code": 400}}, "bad top_n"),
        ({"error": "Unauthorized"}, "Unauthorized"),
        ({"error": "batch size 33 > maximum allowed batch size 32", "error_type": "validation"},
         "batch size 33 > maximum allowed batch size 32"),
        ({"message": "invalid api token"}, "invalid api token"),
        ({"detail": "Unauthorized"}, "Unauthorized"),
        ({"detail": [{"loc": ["body", "query"], "msg": "field required"}]},
         "body.query: field required"),
        ([1, 2], None),
        (None, None),
    ],
)
def test_server_message_reads_every_error_shape(body: object, message: str | None) -> None:
    assert server_message(body) == message


def test_collect_results_accepts_int_scores_and_keeps_order() -> None:
    out = collect_results([(1, 3), (0, 0.5)], 2, score_key="score")
    assert out == [ScoreResult(index=0, score=0.5), ScoreResult(index=1, score=3.0)]
    assert isinstance(out[1].score, float)


# -- planning and merging --------------------------------------------------------------------------
def _ids(chunks) -> list[list[int]]:
    return [c.pair_ids for c in chunks]


def test_one_to_n_is_split_to_the_cap_in_order() -> None:
    docs = [f"d{i}" for i in range(7)]
    chunks = plan_chunks(["q"], docs, [0] * 7, cap=3, native_pairs=False)
    assert _ids(chunks) == [[0, 1, 2], [3, 4, 5], [6]]
    assert [c.call.documents for c in chunks] == [docs[0:3], docs[3:6], docs[6:7]]
    assert all(c.call.query == "q" for c in chunks)
    assert _ids(plan_chunks(["q"], docs, [0] * 7, cap=None, native_pairs=False)) == \
        [list(range(7))]


def test_n_to_n_goes_as_pairs_where_the_endpoint_pairs_itself() -> None:
    queries, docs = ["a", "b", "a"], ["x", "y", "z"]
    chunks = plan_chunks(queries, docs, [0, 1, 2], cap=2, native_pairs=True)
    assert _ids(chunks) == [[0, 1], [2]]
    assert [c.call.query for c in chunks] == [["a", "b"], ["a"]]


def test_n_to_n_is_grouped_by_query_for_rerank_endpoints() -> None:
    queries, docs = ["a", "b", "a", "b", "a"], ["v", "w", "x", "y", "z"]
    chunks = plan_chunks(queries, docs, list(range(5)), cap=2, native_pairs=False)
    assert _ids(chunks) == [[0, 2], [4], [1, 3]]
    assert [(c.call.query, c.call.documents) for c in chunks] == \
        [("a", ["v", "x"]), ("a", ["z"]), ("b", ["w", "y"])]


def test_merge_puts_chunk_results_back_in_caller_order() -> None:
    queries, docs = ["a", "b", "a", "b", "a"], ["v", "w", "x", "y", "z"]
    chunks = plan_chunks(queries, docs, list(range(5)), cap=2, native_pairs=False)
    # each chunk's answer, scored as 10 * caller index, returned in reverse order
    answers = [[ScoreResult(index=j, score=10.0 * c.pair_ids[j])
                for j in reversed(range(len(c.pair_ids)))] for c in chunks]
    merged = merge_chunks(chunks, answers, 5)
    assert [(r.index, r.score) for r in merged] == [(k, 10.0 * k) for k in range(5)]


# -- retry arithmetic ------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "retry"), [(429, True), (500, True), (502, True), (503, True),
                                               (504, True), (501, False), (400, False),
                                               (401, False), (404, False), (413, False),
                                               (422, False)])
def test_which_statuses_retry(status: int, retry: bool) -> None:
    assert should_retry(status) is retry


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(later, now=now) == pytest.approx(30.0)
    earlier = (now - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(earlier, now=now) == 0.0


def test_backoff_doubles_up_to_the_ceiling_and_retry_after_wins() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    waits = [backoff_delay(policy, attempt, None) for attempt in (1, 2, 3, 4)]
    for wait, base in zip(waits, (1.0, 2.0, 4.0, 4.0), strict=True):
        assert base <= wait <= base * 1.1
    assert backoff_delay(policy, 3, 0.25) == 0.25


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_url": "localhost:8000"}, "http:// or https://"),
        ({"base_url": "http://h", "api": "cohere"}, "needs a model name"),
        ({"base_url": "http://h", "api": "jina"}, "needs a model name"),
        ({"base_url": "http://h", "max_batch_size": 0}, "max_batch_size"),
        ({"base_url": "http://h", "max_concurrency": 0}, "max_concurrency"),
        ({"base_url": "http://h", "timeout": 0}, "timeout"),
        ({"base_url": "http://h", "max_retries": -1}, "max_retries"),
        ({"base_url": "http://h", "api": "nope"}, "Unknown remote api"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        RemoteConfig(**kwargs)


def test_flavour_defaults_and_overrides() -> None:
    tei = RemoteScorer("http://h/", api="tei")
    assert (tei.path, tei.max_batch_size, tei.base_url) == ("/rerank", 32, "http://h")
    assert RemoteScorer("http://h", api="tei", max_batch_size=8).max_batch_size == 8
    assert RemoteScorer("http://h", api="vllm-rerank", path="/v2/rerank").path == "/v2/rerank"
    assert RemoteScorer("http://h", api="cohere", model="rerank-v3.5").path == "/v2/rerank"
    assert RemoteScorer("http://h", api="vllm-score").max_batch_size is None


def test_bad_input_fails_before_anything_is_sent() -> None:
    # Port 9 (discard) on loopback: if anything were sent, the error would be a RemoteScoreError.
    remote = RemoteScorer("http://127.0.0.1:9", api="vllm-score", max_retries=0)
    with pytest.raises(InputError, match="1:1, 1:N or N:N"):
        remote.score(["a", "b"], ["x", "y", "z"])
    with pytest.raises(InputError, match=r"documents\[1\] is int"):
        remote.score("q", ["x", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="empty"):
        remote.score("q", [])
    with pytest.raises(InputError, match="truncate_prompt_tokens"):
        remote.score("q", ["x"], truncate_prompt_tokens=0)
    with pytest.raises(InputError, match="one query string"):
        remote.rerank(["q"], ["x"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="raw logits"):
        RemoteScorer("http://127.0.0.1:9", api="cohere", model="m").score(
            "q", ["x"], use_activation=False)
