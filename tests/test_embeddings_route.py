"""``/v1/embeddings`` (issue 15): the OpenAI client against ``scorer serve`` gets the vectors
``Scorer.embed`` gives, whose cosines are the bi-encoder's scores; errors are OpenAI-shaped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine import Scorer
from engine.server import ServerConfig, create_app
from tests.test_server import ServerThread

KEY = "embed-key"
TEXTS = ["the capital of france is paris", "bm25 ranks documents", ""]


@pytest.fixture(scope="module")
def served(st_bi_encoder: Path) -> Iterator[tuple[str, Scorer]]:
    scorer = Scorer.load(st_bi_encoder)
    app = create_app(scorer, ServerConfig(served_model_name="tiny-bi", api_key=KEY))
    with ServerThread(app) as srv:
        yield srv.url, scorer


def test_the_openai_client_gets_scorers_vectors(served: tuple[str, Scorer]) -> None:
    import openai

    url, scorer = served
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY)
    answer = client.embeddings.create(model="tiny-bi", input=TEXTS)
    want = scorer.embed(TEXTS)
    assert [d.index for d in answer.data] == [0, 1, 2]
    for got, ref in zip(answer.data, want, strict=True):
        assert max(abs(a - b) for a, b in zip(got.embedding, ref, strict=True)) <= 1e-6
    assert answer.model == "tiny-bi" and answer.usage.prompt_tokens > 0
    # The vectors are the ones /score compares: their cosine is the bi-encoder's score.
    q, d = want[0], want[1]
    cosine = sum(a * b for a, b in zip(q, d, strict=True)) / (
        sum(a * a for a in q) ** 0.5 * sum(b * b for b in d) ** 0.5)
    assert abs(cosine - scorer.score(TEXTS[0], TEXTS[1])[0].score) <= 1e-5
    # The client's default base64 encoding decodes to the same floats.
    one = client.embeddings.create(model="tiny-bi", input=TEXTS[0], encoding_format="base64")
    assert isinstance(one.data[0].embedding, str)


def test_langchain_openai_embeddings_shape(served: tuple[str, Scorer]) -> None:
    """What OpenAIEmbeddings sends (a list of strings, float or base64) is answered."""
    url, scorer = served
    r = httpx.post(url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "tiny-bi", "input": TEXTS[:2], "encoding_format": "float"},
                   timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    assert len(body["data"][0]["embedding"]) == len(scorer.embed(TEXTS[0])[0])


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"input": [1, 2, 3]}, 400, "Token-id inputs are not supported"),
    ({"input": []}, 400, "input is empty"),
    ({"input": "a", "dimensions": 8}, 400, "does not support matryoshka"),
    ({"input": "a", "model": "other"}, 404, "The model `other` does not exist."),
    ({"input": "word " * 600}, 400, "maximum context length"),
])
def test_bad_requests_get_openai_errors(served: tuple[str, Scorer], body: dict[str, object],
                                        status: int, needle: str) -> None:
    url, _ = served
    r = httpx.post(url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                   json=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_over_long_input_is_cut_when_asked(served: tuple[str, Scorer], st_bi_encoder: Path) -> None:
    url, scorer = served
    r = httpx.post(url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                   json={"input": "word " * 600, "truncate_prompt_tokens": -1}, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()["data"][0]["embedding"]
    # -1 cuts to vLLM's max_model_len (this fixture's 512 positions; Scorer's own default is
    # the tokenizer's 128), so the same cut through Scorer:
    assert scorer.max_model_len == 512
    want = Scorer.load(st_bi_encoder, max_length=512).embed("word " * 600)[0]
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1e-6


def test_no_embeddings_route_for_a_cross_encoder(bert_ce: Path) -> None:
    with ServerThread(create_app(Scorer.load(bert_ce))) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": "a"}, timeout=30)
    assert r.status_code == 404


def test_the_request_has_only_embedding_fields(served: tuple[str, Scorer]) -> None:
    """Template and per-pair fields belong to the scoring routes, not to this request (as in
    vLLM's EmbeddingRequest); the truncation check is the scoring routes' own."""
    url, _ = served
    r = httpx.post(url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                   json={"input": "a", "truncate_prompt_tokens": 10_000}, timeout=30)
    assert r.status_code == 400
    assert "truncate_prompt_tokens value is greater than max_model_len" in r.json()["error"][
        "message"]
    from engine.server.embeddings import EmbeddingRequest

    assert not {"instruction", "chat_template_kwargs", "max_tokens_per_doc"} & set(
        EmbeddingRequest.model_fields)
