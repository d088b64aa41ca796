"""The hardening sweep behind issue 12's closing table: bad input on every public surface.

    python -m tests.hardening_sweep            # about a minute on 2 cores; offline, tiny models

Each case is input that must be refused. Its outcome is one of:

- typed: our error (a ScorerError subclass; a vLLM-signature TypeError on engine.LLM; a 4xx
  with our error body on the server);
- crash: any other exception, or a 5xx;
- silent: no error at all (a wrong or meaningless answer handed back);
- hang: no answer within 20 s.

Prints one row per area and exits 1 if anything but "typed" happened. Not part of `make test`
(the suite's own tests cover each defect); this is the wide net, rerun after a change.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HANG_S = 20.0
AREAS: dict[str, dict[str, int]] = {}
FAILURES: list[str] = []


def _run(area: str, label: str, call: Callable[[], Any], typed: Callable[[Any], bool]) -> None:
    row = AREAS.setdefault(area, {"cases": 0, "typed": 0, "crash": 0, "silent": 0, "hang": 0})
    row["cases"] += 1
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - classifying is the point
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HANG_S)
    if worker.is_alive():
        outcome = "hang"
    elif "error" in box:
        outcome = "typed" if typed(box["error"]) else "crash"
    else:
        outcome = "typed" if typed(box.get("value")) else "silent"
    row[outcome] += 1
    if outcome != "typed":
        detail = box.get("error", box.get("value"))
        FAILURES.append(f"{area} / {label}: {outcome}: {detail!r:.200}")


BAD_TEXTS: list[Any] = [None, 3, 2.5, b"bytes", {"a": 1}, {"x", "y"}, ["ok", None], ["ok", 7],
                        ["ok", b"b"], "\ud800", ["ok", "bad \udfff"], [], [[]], [["nested"]],
                        {"content": [{"type": "text", "text": "x"}]}]
BAD_OPTIONS: list[dict[str, Any]] = [
    {"truncate_prompt_tokens": v} for v in (-2, 0, 1, 10**9, True, "5", 2.5)
] + [{"use_activation": v} for v in ("yes", 1, 0.5)]


def scorer_cases(scorer: Any, area: str) -> None:
    from engine import ScorerError

    def typed(e: Any) -> bool:
        return isinstance(e, ScorerError)

    for bad in BAD_TEXTS:
        _run(area, f"documents={bad!r:.30}", lambda b=bad: scorer.score("q", b), typed)
        _run(area, f"queries={bad!r:.30}", lambda b=bad: scorer.score(b, ["d"]), typed)
        if not isinstance(bad, (str, list)):
            _run(area, f"rerank query={bad!r:.30}", lambda b=bad: scorer.rerank(b, ["d"]), typed)
    _run(area, "N:M pairing", lambda: scorer.score(["a", "b"], ["c", "d", "e"]), typed)
    for opts in BAD_OPTIONS:
        _run(area, f"options {opts}", lambda o=opts: scorer.score("q", ["d " * 300], **o), typed)
    for top_n in (-1, 2.5, "3", True):
        _run(area, f"top_n={top_n!r}", lambda t=top_n: scorer.rerank("q", ["a", "b"], top_n=t),
             typed)
    _run(area, "lora_request without LoRA", lambda: scorer.score("q", "d", lora_request="a"),
         typed)


def load_cases(models: dict[str, Path], tmp: Path) -> None:
    from engine import Scorer, ScorerError

    def typed(e: Any) -> bool:
        return isinstance(e, ScorerError)

    empty = tmp / "empty"
    empty.mkdir()
    no_tok = tmp / "no_tokenizer"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_tok / f).write_bytes((models["bert_ce"] / f).read_bytes())
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("model=123", lambda: Scorer.load(123)),  # type: ignore[arg-type]
        ("missing folder", lambda: Scorer.load(str(tmp / "nope"))),
        ("empty folder", lambda: Scorer.load(str(empty))),
        ("no tokenizer files", lambda: Scorer.load(str(no_tok))),
        ("forced cross-encoder on a bi-encoder",
         lambda: Scorer.load(models["st_bi"], score_type="cross-encoder")),
        ("unknown score_type", lambda: Scorer.load(models["bert_ce"], score_type="fancy")),
        ("unknown option", lambda: Scorer.load(models["bert_ce"], colour="red")),
        ("batch_size=0", lambda: Scorer.load(models["bert_ce"], batch_size=0)),
        ("max_length=1", lambda: Scorer.load(models["bert_ce"], max_length=1)),
        ("max_length too big", lambda: Scorer.load(models["bert_ce"], max_length=10**6)),
        ("dtype=float64", lambda: Scorer.load(models["bert_ce"], dtype="float64")),
        ("bad template", lambda: Scorer.load(models["bert_ce"], template="{{ broken")),
        ("LoRA on a bi-encoder", lambda: Scorer.load(models["st_bi"], enable_lora=True)),
    ]
    for label, call in cases:
        _run("Scorer.load", label, call, typed)


def llm_cases(bert_ce: Path) -> None:
    from engine import LLM, PoolingParams, ScorerError

    llm = LLM(str(bert_ce))

    def typed(e: Any) -> bool:  # vLLM's own signature errors are TypeErrors
        return isinstance(e, (ScorerError, TypeError))

    for bad in BAD_TEXTS[:10]:
        _run("engine.LLM", f"data_2={bad!r:.30}",
             lambda b=bad: llm.score("q", b, use_tqdm=False), typed)
    _run("engine.LLM", "pooling_params dict",
         lambda: llm.score("q", "d", use_tqdm=False, pooling_params={"x": 1}), typed)
    _run("engine.LLM", "dimensions on a classifier",
         lambda: llm.score("q", "d", use_tqdm=False, pooling_params=PoolingParams(dimensions=4)),
         typed)
    _run("engine.LLM", "over-long input", lambda: llm.score("q", "d " * 3000, use_tqdm=False),
         typed)
    _run("engine.LLM", "unknown engine arg", lambda: LLM(str(bert_ce), swap_space=4), typed)
    _run("engine.LLM", "tensor_parallel_size=2",
         lambda: LLM(str(bert_ce), tensor_parallel_size=2), typed)


def ranking_cases() -> None:
    from engine import ScorerError, ScoreResult, rank

    def results(scores: list[float]) -> list[Any]:
        return [ScoreResult(index=i, score=s) for i, s in enumerate(scores)]

    docs = ["a", "b", "c", "d"]
    for bad in (math.nan, math.inf, -math.inf):
        scores = [0.1, bad, 0.9, 0.5]
        _run("ranking", f"{bad} score", lambda s=scores: rank(results(s), docs, top_n=3),
             lambda e: isinstance(e, ScorerError))
        _run("ranking", f"{bad} score, non_finite='last'",
             lambda s=scores: [r.index for r in rank(results(s), docs, non_finite="last")],
             lambda got: got == [2, 3, 0, 1])


def server_cases(bert_ce: Path) -> None:
    from fastapi.testclient import TestClient

    from engine import Scorer
    from engine.server import ServerConfig, create_app

    app = create_app(Scorer.load(bert_ce), ServerConfig(served_model_name="m", api_key="k",
                                                        max_documents_per_request=50))
    auth = {"Authorization": "Bearer k"}
    bodies: list[tuple[str, str, Any]] = []
    for bad in BAD_TEXTS:
        if isinstance(bad, (bytes, set)) or (isinstance(bad, list) and b"b" in bad):
            continue  # not JSON: no client can send it
        bodies += [("/score", "documents", {"queries": "q", "documents": bad}),
                   ("/rerank", "documents", {"query": "q", "documents": bad}),
                   ("/rerank", "query", {"query": bad, "documents": ["d"]})]
    # JSON has no Python types: "5", "yes" and true are valid in pydantic's lax mode, as in vLLM.
    server_options = [{"truncate_prompt_tokens": v} for v in (-2, 0, 1, 10**9, 2.5)] + [
        {"use_activation": 0.5}, {"padding": "sideways"}]
    for opts in server_options:
        bodies.append(("/score", str(opts), {"queries": "q", "documents": ["d " * 300], **opts}))
    bodies += [("/score", "N:M", {"queries": ["a", "b"], "documents": ["c", "d", "e"]}),
               ("/rerank", "too many", {"query": "q", "documents": ["d"] * 51}),
               ("/rerank", "unknown model", {"model": "x", "query": "q", "documents": ["d"]}),
               ("/rerank", "top_n=-1", {"query": "q", "documents": ["d"], "top_n": -1}),
               ("/score", "over-long", {"queries": "q", "documents": ["d " * 3000]}),
               ("/invocations", "unknown body", {"hello": 1})]
    raw: list[tuple[str, bytes]] = [("invalid UTF-8", b'{"query": "\xff", "documents": ["d"]}'),
                                    ("deep JSON", b"[" * 100_000 + b"]" * 100_000),
                                    ("not JSON", b"{query: q}"), ("empty body", b"")]

    def good_error(r: Any) -> bool:
        if not hasattr(r, "json"):
            return False  # the client raised: counted as a crash
        try:
            body = r.json()
        except ValueError:
            return False
        return 400 <= r.status_code < 500 and isinstance(body.get("error"), dict) and bool(
            body["error"].get("message"))

    with TestClient(app) as client:
        for path, label, body in bodies:
            # json.dumps escapes a lone surrogate as \ud800, valid JSON a client may send.
            _run("scorer serve", f"{path} {label}: {str(body)[:40]}",
                 lambda p=path, b=body: client.post(
                     p, content=json.dumps(b).encode(),
                     headers={**auth, "content-type": "application/json"}), good_error)
        for label, data in raw:
            _run("scorer serve", label, lambda d=data: client.post(
                "/rerank", content=d, headers={**auth, "content-type": "application/json"}),
                 good_error)
        for header in (None, "Bearer wrong", "k", "Basic k"):
            _run("scorer serve auth", f"Authorization={header}", lambda h=header: client.post(
                "/rerank", json={"query": "q", "documents": ["d"]},
                headers={} if h is None else {"Authorization": h}),
                 lambda r: r.status_code == 401)


def wrapper_cases(scorer: Any) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    import langchain_scorer
    import llamaindex_scorer
    from engine import ScorerError

    def typed(e: Any) -> bool:
        return isinstance(e, (ScorerError, ValueError)) and not isinstance(e, AttributeError)

    lc = langchain_scorer.ScorerRerank(scorer=scorer)
    li = llamaindex_scorer.ScorerRerank(scorer=scorer)
    node = NodeWithScore(node=TextNode(text="d"), score=1.0)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("LangChain documents=None", lambda: lc.compress_documents(None, "q")),  # type: ignore[arg-type]
        ("LangChain str items", lambda: lc.compress_documents(["d"], "q")),  # type: ignore[list-item]
        ("LangChain query=None", lambda: lc.compress_documents([], None)),  # type: ignore[arg-type]
        ("LangChain top_n=0", lambda: langchain_scorer.ScorerRerank(scorer=scorer, top_n=0)),
        ("LangChain huge format spec", lambda: langchain_scorer.ScorerRerank(
            scorer=scorer, document_template="{page_content:>99999999999}")),
        ("LangChain hybrid weight 2", lambda: langchain_scorer.ScorerRerank(
            scorer=scorer, hybrid="rrf", hybrid_weight=2)),
        ("LlamaIndex nodes=None", lambda: li.postprocess_nodes(None, query_str="q")),  # type: ignore[arg-type]
        ("LlamaIndex no query", lambda: li.postprocess_nodes([node])),
        ("LlamaIndex TextNode items", lambda: li.postprocess_nodes([node.node], query_str="q")),  # type: ignore[list-item]
        ("LlamaIndex NaN threshold", lambda: llamaindex_scorer.ScorerRerank(
            scorer=scorer, score_threshold=math.nan)),
    ]
    for label, call in cases:
        _run("wrappers", label, call, typed)


def remote_cases() -> None:
    import socket

    from engine import RemoteScorer, ScorerError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    remote = RemoteScorer(f"http://127.0.0.1:{port}", api="vllm-rerank", timeout=2.0)
    _run("RemoteScorer", "connection refused", lambda: remote.score("q", ["d"]),
         lambda e: isinstance(e, ScorerError))
    for bad in BAD_TEXTS[:8]:
        _run("RemoteScorer", f"documents={bad!r:.30}", lambda b=bad: remote.score("q", b),
             lambda e: isinstance(e, ScorerError))


@contextmanager
def tiny_models() -> Iterator[dict[str, Path]]:
    from tests import models as builders

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        encoder = builders.build_bert_encoder(root / "enc")
        yield {"bert_ce": builders.build_cross_encoder(root / "ce", "bert"),
               "st_bi": builders.build_st_bi_encoder(root / "bi", encoder),
               "colbert": builders.build_colbert_ir(root / "colbert", encoder), "tmp": root}


def main() -> int:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)
    from engine import Scorer

    with tiny_models() as models:
        for name in ("bert_ce", "st_bi", "colbert"):
            scorer_cases(Scorer.load(models[name]), f"Scorer ({name})")
        load_cases(models, models["tmp"])
        llm_cases(models["bert_ce"])
        ranking_cases()
        server_cases(models["bert_ce"])
        wrapper_cases(Scorer.load(models["bert_ce"]))
        remote_cases()
    print(f"{'area':22} {'cases':>6} {'typed':>6} {'crash':>6} {'silent':>7} {'hang':>5}")
    total = {"cases": 0, "typed": 0, "crash": 0, "silent": 0, "hang": 0}
    for area, row in AREAS.items():
        print(f"{area:22} {row['cases']:6} {row['typed']:6} {row['crash']:6} {row['silent']:7} "
              f"{row['hang']:5}")
        for k in total:
            total[k] += row[k]
    print(f"{'total':22} {total['cases']:6} {total['typed']:6} {total['crash']:6} "
          f"{total['silent']:7} {total['hang']:5}")
    for line in FAILURES:
        print("  " + line)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
