"""Bad input is a typed error, never a silent wrong answer (one test per defect of the sweep).

Each test here failed before its fix: NaN scores that scrambled a ranking, truncation below the
special tokens, lone surrogates, empty tokenizers, dicts and sets iterated as documents,
untyped errors from the wrappers and the loader, a progress callback that deadlocked, and
transformers' LOAD REPORT on the terminal.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import (
    InputError,
    ModelLoadError,
    NonFiniteScoreError,
    RemoteScoreError,
    Scorer,
    ScorerError,
)
from engine.ranking import rank
from engine.remote.adapters import collect_results
from engine.types import ScoreResult
from tests.conftest import DOCUMENTS, QUERIES

NAN = float("nan")


@pytest.fixture(scope="module")
def ce(bert_ce: Path) -> Scorer:
    return Scorer.load(bert_ce)


# -- 1. non-finite scores ----------------------------------------------------------------------
def _results(scores: list[float]) -> list[ScoreResult]:
    return [ScoreResult(index=i, score=s) for i, s in enumerate(scores)]


def test_one_nan_is_refused_instead_of_scrambling_the_ranking() -> None:
    scores = [0.1, NAN, 0.9, 0.5, 0.7, 0.3]
    with pytest.raises(NonFiniteScoreError, match="indices 1") as info:
        rank(_results(scores), list("abcdef"), top_n=3)
    assert info.value.indices == [1]


def test_non_finite_scores_can_be_ranked_last_on_request() -> None:
    scores = [0.1, NAN, 0.9, math.inf, 0.7, -math.inf]
    ranked = rank(_results(scores), list("abcdef"), top_n=4, non_finite="last")
    assert [r.index for r in ranked] == [2, 4, 0, 1]  # every finite score first, best first


@pytest.fixture(scope="module")
def nan_ce(bert_ce: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("nan_ce") / "ce"
    shutil.copytree(bert_ce, folder)
    weights = load_file(str(folder / "model.safetensors"))
    for key in weights:
        if key.startswith("classifier."):
            weights[key].fill_(NAN)
    save_file(weights, str(folder / "model.safetensors"))
    return folder


def test_a_checkpoint_with_nan_weights_is_a_typed_error_naming_the_model(nan_ce: Path) -> None:
    with pytest.raises(NonFiniteScoreError, match=r"nan_ce.*scored 2 of 2 documents nan"):
        Scorer.load(nan_ce).score("q", ["a", "b"])
    with pytest.raises(NonFiniteScoreError):
        Scorer.load(nan_ce).rerank("q", ["a", "b"])
    kept = Scorer.load(nan_ce, non_finite="last").rerank("q", ["a", "b"])
    assert [r.index for r in kept] == [0, 1] and all(math.isnan(r.score) for r in kept)


@pytest.mark.parametrize(
    ("score", "needle"),
    [(NAN, "not a finite number"), (math.inf, "not a finite number"),
     (10**400, "too large for a float")],
)
def test_remote_non_finite_or_huge_scores_are_refused(score: float, needle: str) -> None:
    with pytest.raises(RemoteScoreError, match=needle):
        collect_results([(0, 0.5), (1, score)], 2, score_key="score")


def test_remote_nan_in_a_servers_json_is_refused() -> None:
    import httpx

    from engine import RemoteScorer

    def handler(request: httpx.Request) -> httpx.Response:
        body = '{"data": [{"index": 0, "score": NaN}, {"index": 1, "score": Infinity}]}'
        return httpx.Response(200, text=body, headers={"content-type": "application/json"})

    remote = RemoteScorer("http://scorer.test", max_retries=0)
    remote._driver._transport = httpx.MockTransport(handler)
    with pytest.raises(RemoteScoreError, match="not a finite number"):
        remote.score("q", ["a", "b"])


# -- 2. truncation below the special tokens --------------------------------------------------------
@pytest.mark.parametrize("tpt", [1, 2, 3])
def test_truncate_prompt_tokens_below_the_special_tokens_is_refused(ce: Scorer, tpt: int) -> None:
    # A BERT pair has 3 special tokens; 4 keeps one token of text.
    for docs in (["short"], ["a long document " * 40]):
        with pytest.raises(InputError, match=f"truncate_prompt_tokens={tpt} is below 4"):
            ce.score("q", docs, truncate_prompt_tokens=tpt)
    assert ce.score("q", ["a long document " * 40], truncate_prompt_tokens=4)[0].num_tokens == 4


@pytest.mark.parametrize("family", ["bert_ce", "st_bi_encoder", "colbert_ir"])
def test_max_length_below_the_special_tokens_is_refused_at_load(
    family: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(InputError, match="max_length=2 is below"):
        Scorer.load(request.getfixturevalue(family), max_length=2)


# -- 3. lone surrogates
@pytest.mark.parametrize(
    ("queries", "documents", "needle"),
    [("q", ["ok", "bad \ud800 text"], r"documents\[1\] has a lone surrogate"),
     ("\udfff", ["ok"], "queries has a lone surrogate"),
     (["q", "x\ud800"], ["a", "b"], r"queries\[1\] has a lone surrogate")],
)
def test_lone_surrogates_are_a_typed_error(
    ce: Scorer, queries: object, documents: object, needle: str
) -> None:
    with pytest.raises(InputError, match=needle):
        ce.score(queries, documents)  # type: ignore[arg-type]


# -- 4. a folder without tokenizer files
def test_a_folder_without_tokenizer_files_is_refused_at_load(bert_ce: Path, tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        shutil.copy(bert_ce / name, tmp_path / name)
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        Scorer.load(tmp_path)


# -- 5. dicts and sets as documents
@pytest.mark.parametrize(
    ("documents", "needle"),
    [({"a": "doc a", "b": "doc b"}, "would score its keys"), ({"x", "y"}, "order is arbitrary"),
     (frozenset({"x"}), "order is arbitrary")],
)
def test_dicts_and_sets_are_refused(ce: Scorer, documents: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        ce.score("q", documents)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=needle):
        ce.rerank("q", documents)  # type: ignore[arg-type]


# -- 6. untyped errors
@pytest.mark.parametrize("model", [123, 1.5, ["a"]])
def test_scorer_load_of_a_non_path_is_an_input_error(model: object) -> None:
    with pytest.raises(InputError, match="model must be a model folder"):
        Scorer.load(model)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("modules", "needle"),
    [(["not an object"], "entry 0"), ([{"type": 3, "path": ""}], "entry 0"),
     ({"type": "x"}, "must hold a list")],
)
def test_malformed_modules_json_is_a_load_error(
    st_bi_encoder: Path, tmp_path: Path, modules: object, needle: str
) -> None:
    folder = tmp_path / "bi"
    shutil.copytree(st_bi_encoder, folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match=needle):
        Scorer.load(folder)


def test_wrappers_refuse_none_and_wrong_containers(ce: Scorer) -> None:
    from langchain_core.documents import Document

    from langchain_scorer import ScorerCrossEncoder, ScorerRerank

    rerank = ScorerRerank(scorer=ce)
    for bad in (None, "text", {"a": Document(page_content="x")}):
        with pytest.raises(InputError, match="documents"):
            rerank.compress_documents(bad, "q")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="text_pairs is None"):
        ScorerCrossEncoder(scorer=ce).score(None)  # type: ignore[arg-type]


def test_llamaindex_takes_a_query_string_as_query_bundle(ce: Scorer) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_scorer import ScorerRerank

    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCUMENTS]
    reranker = ScorerRerank(scorer=ce, top_n=None)
    got = reranker.postprocess_nodes(nodes, query_bundle=QUERIES[0])  # type: ignore[arg-type]
    want = reranker.postprocess_nodes(nodes, query_str=QUERIES[0])
    assert [n.node.text for n in got] == [n.node.text for n in want]
    with pytest.raises(InputError, match="nodes is None"):
        reranker.postprocess_nodes(None, query_str="q")  # type: ignore[arg-type]


def test_metadata_that_cannot_be_copied_names_its_key(ce: Scorer) -> None:
    from langchain_core.documents import Document

    from langchain_scorer import ScorerRerank

    docs = [Document(page_content="a"),
            Document(page_content="b", metadata={"lock": threading.Lock()})]
    with pytest.raises(InputError, match=r"documents\[1\]: metadata\['lock'\]"):
        ScorerRerank(scorer=ce, top_n=None).compress_documents(docs, "q")


@pytest.mark.parametrize("template", ["{page_content:>99999999999}", "{page_content!r}"])
def test_document_template_format_specs_are_refused(ce: Scorer, template: str) -> None:
    from pydantic import ValidationError

    from langchain_scorer import ScorerRerank

    with pytest.raises(ValidationError, match="conversion or format spec"):
        ScorerRerank(scorer=ce, document_template=template)


# -- 7. a progress callback that calls the same scorer
def test_a_progress_callback_may_call_the_same_scorer(ce: Scorer) -> None:
    inner: list[float] = []

    def progress(done: int) -> None:
        inner.append(ce.score("q", "d")[0].score)  # deadlocked on a non-reentrant lock

    done = threading.Event()
    result: list[int] = []

    def run() -> None:
        result.append(len(ce.score("q", ["doc"] * 70, progress=progress)))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), "a progress callback calling its scorer deadlocked"
    assert result == [70] and len(inner) >= 2


# -- 10. transformers' LOAD REPORT
def test_forcing_a_score_type_keeps_transformers_load_report_off_the_terminal(
    bert_ce: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="engine"):
        Scorer.load(bert_ce, score_type="bi-encoder")
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "\x1b[" not in out + err
    assert any("not used (classifier.bias, classifier.weight)" in r.message
               for r in caplog.records)


def test_every_error_is_a_scorer_error() -> None:
    assert issubclass(NonFiniteScoreError, ScorerError)


# 9. remote deadlines and refused connections
@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A loopback server answering a valid response one byte every 0.4 s, headers included."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        body = b'{"data": [{"index": 0, "score": 0.5}]}'
        message = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            conn.recv(65536)
            for byte in message:
                if stop.is_set():
                    break
                conn.send(bytes([byte]))
                time.sleep(0.4)
        except OSError:
            pass
        finally:
            conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_remote_timeout_is_a_deadline_not_a_per_read_limit(trickling_server: str) -> None:
    import time

    from engine import RemoteScorer

    remote = RemoteScorer(trickling_server, timeout=1.0, max_retries=0)
    started = time.monotonic()
    with pytest.raises(RemoteScoreError, match="timed out after 1.0s"):
        remote.score("q", ["a"])
    assert time.monotonic() - started < 3.0  # was 16.8 s: each trickled byte reset the timeout


async def test_async_remote_timeout_is_a_deadline_too(trickling_server: str) -> None:
    import time

    from engine import RemoteScorer

    remote = RemoteScorer(trickling_server, timeout=1.0, max_retries=0)
    started = time.monotonic()
    with pytest.raises(RemoteScoreError, match="timed out after 1.0s"):
        await remote.ascore("q", ["a"])
    assert time.monotonic() - started < 3.0
    await remote.aclose()


def test_a_refused_connection_fails_at_once_unless_retries_are_asked_for() -> None:
    from engine import RemoteScorer

    waits: list[float] = []
    remote = RemoteScorer("http://127.0.0.1:9", max_retries=3)
    remote._driver._sleep = waits.append
    with pytest.raises(RemoteScoreError, match="Nothing answered at http://127.0.0.1:9"):
        remote.score("q", ["a"])
    assert waits == []  # no retry of a refused connection
    retrying = RemoteScorer("http://127.0.0.1:9", max_retries=2, retry_connect_errors=True)
    retrying._driver._sleep = waits.append
    with pytest.raises(RemoteScoreError, match="gave up after 3 attempts"):
        retrying.score("q", ["a"])
    assert len(waits) == 2


# 8. the server
class _Exploding:
    """A scorer whose model call fails with an unexpected (non-scorer) error, once."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.model, self.score_type = inner.model, inner.score_type
        self.max_length, self.min_length = inner.max_length, inner.min_length
        self.failures = 1

    def _score_resolved(self, *args: object, **kwargs: object) -> object:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        return self.inner._score_resolved(*args, **kwargs)  # type: ignore[arg-type]


def test_a_500_keeps_the_connection_usable(ce: Scorer) -> None:
    import httpx

    from engine.server import create_app
    from tests.test_server import ServerThread

    with ServerThread(create_app(_Exploding(ce))) as server, httpx.Client() as client:
        first = client.post(f"{server.url}/score", json={"queries": "q", "documents": ["a"]})
        assert first.status_code == 500
        assert first.json()["error"]["message"] == "RuntimeError: boom"
        # The same keep-alive connection serves the next request (it was reset before).
        second = client.post(f"{server.url}/score", json={"queries": "q", "documents": ["a"]})
        assert second.status_code == 200 and len(second.json()["data"]) == 1


@pytest.mark.parametrize(
    "body", [b'{"queries": "\xff\xfe", "documents": "x"}', b"[" * 100_000 + b"]" * 100_000],
    ids=["invalid UTF-8", "100k-deep JSON"],
)
def test_unparseable_bodies_get_the_vllm_error_body(ce: Scorer, body: bytes) -> None:
    from fastapi.testclient import TestClient

    from engine.server import create_app

    with TestClient(create_app(ce)) as client:
        r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == 400
    assert "UTF-8 JSON" in error["message"]


def test_api_key_file_and_its_help(tmp_path: Path) -> None:
    import argparse

    from engine.server.cli import add_arguments, api_key

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert "--api-key-file" in parser.format_help() and "ps" in parser.format_help()
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    assert api_key(parser.parse_args(["m", "--api-key-file", str(key)])) == "s3cret"
    with pytest.raises(InputError, match="not both"):
        api_key(parser.parse_args(["m", "--api-key-file", str(key), "--api-key", "x"]))
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match="is empty"):
        api_key(parser.parse_args(["m", "--api-key-file", str(tmp_path / "empty")]))


def test_a_busy_port_is_found_before_the_model_loads(bert_ce: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "engine.cli", "serve", str(bert_ce), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode == 2 and "already in use" in out.stderr and "pass --port" in out.stderr
    assert "serving" not in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - started < 60


def test_scoring_from_another_thread_builds_no_autograd_graph(st_bi_encoder: Path) -> None:
    """Found by tests/hardening_sweep.py: inference_mode is per thread, and a head run outside
    the forward's block on a worker thread (ascore, the server) recorded gradients."""
    import threading

    scorer = Scorer.load(st_bi_encoder)
    assert not any(p.requires_grad for m in scorer._backend.modules() for p in m.parameters())
    seen: list[float] = []
    worker = threading.Thread(target=lambda: seen.extend(
        r.score for r in scorer.score("q", ["a", "b"])))
    worker.start()
    worker.join()
    assert seen == [r.score for r in scorer.score("q", ["a", "b"])]
