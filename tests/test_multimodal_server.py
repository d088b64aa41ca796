"""Images over HTTP: ``/score`` and ``/rerank`` take vLLM's ``{"content": [...]}`` items for a
multimodal reranker, as ``vllm serve`` does, started the way ``scorer serve`` starts.

Parity is against the model's own forward (the references of ``tests.test_multimodal``), so a
score that went through the server's parsing, micro-batching and vLLM tokenization equals the
transformers model on the processor's output to 1e-5 (float32).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_multimodal import IMG, jina_reference, qwen3_vl_reference
from tests.test_server import ServerThread
from tests.vl_models import build_jina_vl, build_qwen3_vl, content, png_bytes

TOL = 1e-5
QWEN3_VL = ('{"architectures": ["Qwen3VLForSequenceClassification"], '
            '"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}')


def serve_app(argv: list[str]) -> Any:
    """The app ``scorer serve ARGV`` runs, without binding a port."""
    from engine.cli import build_parser
    from engine.server.cli import build_app

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        args = build_parser().parse_args(["serve", *argv])
    return build_app(args)[0]


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vl_http")
    (folder / "images").mkdir()
    (folder / "images" / "local.png").write_bytes(png_bytes(IMG[1]))
    return folder


@pytest.fixture(scope="module")
def qwen3_vl(vl_dir: Path) -> Path:
    return build_qwen3_vl(vl_dir / "qwen3_vl")


@pytest.fixture(scope="module")
def qwen3_server(qwen3_vl: Path, vl_dir: Path) -> Iterator[ServerThread]:
    app = serve_app([str(qwen3_vl), "--hf-overrides", QWEN3_VL, "--chat-template",
                     "qwen3_vl_reranker", "--served-model-name", "q3vl",
                     "--allowed-local-media-path", str(vl_dir / "images")])
    with ServerThread(app) as running:
        yield running


def post(server: ServerThread, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def scores(response: httpx.Response) -> list[float]:
    assert response.status_code == 200, response.text
    return [d["score"] for d in response.json()["data"]]


def close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= TOL, f"pair {i}: {g} vs the model's own forward {w}"


def test_score_takes_image_documents_and_matches_the_models_forward(
        qwen3_server: ServerThread, qwen3_vl: Path) -> None:
    docs = [content("a photo", IMG[0]), "a bicycle", content(IMG[2])]
    got = scores(post(qwen3_server, "/score", {"queries": "a red bicycle", "documents": docs}))
    want = qwen3_vl_reference(qwen3_vl, [("a red bicycle", ["a photo", IMG[0]]),
                                         ("a red bicycle", "a bicycle"),
                                         ("a red bicycle", [IMG[2]])])
    close(got, want)
    # An image query on the other spellings too (N:N, data_1/data_2), and from a local file.
    local = {"content": [{"type": "text", "text": "a file"}, {"type": "image_url", "image_url": {
        "url": f"file://{qwen3_vl.parent / 'images' / 'local.png'}"}}]}
    got = scores(post(qwen3_server, "/v1/score", {
        "data_1": [content("which is it?", IMG[2]), "q"], "data_2": [content(IMG[3]), local]}))
    close(got, qwen3_vl_reference(qwen3_vl, [(["which is it?", IMG[2]], [IMG[3]]),
                                             ("q", ["a file", IMG[1]])]))


def test_rerank_returns_image_documents_as_vllm_does(qwen3_server: ServerThread) -> None:
    image_doc = content("a photo", IMG[0])
    r = post(qwen3_server, "/v1/rerank", {"query": "a red bicycle",
                                          "documents": [image_doc, "a bicycle"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "q3vl"
    by_index = {res["index"]: res for res in body["results"]}
    assert by_index[0]["document"] == {"text": None, "multi_modal": image_doc["content"]}
    assert by_index[1]["document"] == {"text": "a bicycle", "multi_modal": None}
    ranked = [res["relevance_score"] for res in body["results"]]
    assert ranked == sorted(ranked, reverse=True)
    alone = scores(post(qwen3_server, "/score", {"queries": "a red bicycle",
                                                 "documents": [image_doc, "a bicycle"]}))
    close([by_index[i]["relevance_score"] for i in (0, 1)], alone)
    assert body["usage"]["prompt_tokens"] > 2 * 20  # the image's patch tokens are counted


def test_concurrent_image_requests_merge_and_each_gets_its_own_answer(
        qwen3_server: ServerThread) -> None:
    """The micro-batcher shares an equal image query between requests and keeps each request's
    scores equal to the request scored alone; a corrupt image fails only its own request."""
    query = content("which is it?", IMG[2])
    requests = [{"queries": query, "documents": [content(IMG[k % 4]), f"text {k}"]}
                for k in range(6)]
    alone = [scores(post(qwen3_server, "/score", body)) for body in requests]
    bad = {"queries": query, "documents": ["fine", {"content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=qwen3_server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/score", json=b)
                                          for b in [*requests, bad]))

    stats = qwen3_server.app.state.batcher.stats
    largest = stats.largest_batch_pairs
    *answers, failed = asyncio.run(together())
    for got, want in zip(answers, alone, strict=True):
        assert max(abs(x - y) for x, y in zip(scores(got), want, strict=True)) <= 1e-6
    assert stats.largest_batch_pairs > max(largest, 2)  # requests did share a model call
    assert failed.status_code == 400
    assert "document 1, image 0: the image could not be decoded" in failed.json()["error"][
        "message"]


@pytest.mark.parametrize(("document", "needle"), [
    ({"content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]},
     "--allow-http-media"),
    ({"content": [{"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}]},
     "must be a subpath of allowed_local_media_path"),
    ({"content": [{"type": "video_url", "video_url": {"url": "x"}}]}, "documents[1]['content'][0]"),
    ({"content": []}, "documents[1]['content'] is empty"),
])
def test_refused_images_are_400_naming_the_input(qwen3_server: ServerThread, document: Any,
                                                  needle: str) -> None:
    r = post(qwen3_server, "/rerank", {"query": "q", "documents": ["a", document]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["type"] == "BadRequestError"


def test_jina_m0_over_http_and_the_http_fetch_flag(vl_dir: Path) -> None:
    """jina-reranker-m0 needs no template; ``--allow-http-media`` turns fetching on (served
    here from a loopback HTTP server), ``--allowed-media-domains`` limits it."""
    import http.server
    import threading

    path = build_jina_vl(vl_dir / "jina")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(vl_dir / "images"), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{images.server_address[1]}/local.png"
    doc = {"content": [{"type": "text", "text": "a file"},
                       {"type": "image_url", "image_url": {"url": url}}]}
    try:
        with ServerThread(serve_app([str(path), "--allow-http-media"])) as server:
            got = scores(post(server, "/score", {"queries": "q", "documents": [doc, "text"]}))
        close(got, jina_reference(path, [("q", ["a file", IMG[1]]), ("q", "text")]))
        app = serve_app([str(path), "--allowed-media-domains", "images.example.org"])
        with ServerThread(app) as server:
            r = post(server, "/score", {"queries": "q", "documents": [doc]})
        assert r.status_code == 400 and "allowed domains" in r.json()["error"]["message"]
    finally:
        images.shutdown()


def test_templates_readme_serve_example_runs(qwen3_vl: Path, vl_dir: Path) -> None:
    """The ```bash block of templates/README.md: its ``scorer serve`` flags and its curl body,
    with the placeholder paths swapped for the tiny model and a folder of images."""
    import json
    import re
    import shlex

    readme = Path(__file__).resolve().parent.parent / "templates" / "README.md"
    block = re.search(r"^```bash\n(.*?)^```", readme.read_text(), re.DOTALL | re.MULTILINE)
    assert block is not None
    source = block.group(1).replace("\\\n", " ")
    source = source.replace("path/to/Qwen3-VL-Reranker-2B", str(qwen3_vl))
    source = source.replace("/data/images", str(vl_dir / "images"))
    (vl_dir / "images" / "1.png").write_bytes(png_bytes(IMG[3]))
    start = source.index("curl ")
    serve, curl = shlex.split(source[:start]), shlex.split(source[start:])
    assert serve[:2] == ["scorer", "serve"] and curl[0] == "curl"
    body = json.loads(curl[curl.index("-d") + 1])
    with ServerThread(serve_app(serve[2:])) as server:
        r = post(server, "/rerank", body)
    assert r.status_code == 200, r.text
    got = {res["index"]: res["relevance_score"] for res in r.json()["results"]}
    close([got[0], got[1]], qwen3_vl_reference(qwen3_vl, [("a red bicycle", [IMG[3]]),
                                                          ("a red bicycle",
                                                           "a text-only document")]))
