"""Server throughput with dynamic micro-batching on and off, under concurrent clients.

Starts ``scorer serve`` (a separate process, as in production) on a loopback port, once with
micro-batching and once with ``--no-batching``, and drives it with N concurrent clients that
each send small ``/rerank`` requests (one SciFact-mini query and its first K BM25 candidates,
documents cut to a few hundred characters). Reports requests/s, pairs/s and latency
percentiles for each mode, and checks both modes return the same scores.

    python -m bench.server_throughput                      # bundled MiniLM (bi-encoder)
    python -m bench.server_throughput --model path/to/ce   # any local checkpoint
    python -m bench.server_throughput --cross-encoder      # a MiniLM-shaped cross-encoder

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


def _start_server(model: str, port: int, batching: bool, extra: list[str],
                  threads: int | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "engine.cli", "serve", model, "--port", str(port),
           "--log-level", "warning", *extra]
    if not batching:
        cmd.append("--no-batching")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        # On a shared machine torch's default thread pool spins against other processes.
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    import httpx

    for _ in range(2400):  # bounded: two minutes
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.communicate()[1]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not become healthy")


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
                r = await http.post("/rerank", json=bodies[i])
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                by_index = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
                scores[i] = [by_index[k] for k in range(len(bodies[i]["documents"]))]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies, scores


def _run_mode(model: str, batching: bool, bodies: list[dict[str, Any]],
              warmup: list[dict[str, Any]], clients: int, extra: list[str],
              threads: int | None) -> dict[str, Any]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(model, port, batching, extra, threads)
    try:
        _wait_healthy(url, proc)
        asyncio.run(_drive(url, warmup, clients))
        before = httpx.get(url + "/metrics").text
        wall, latencies, scores = asyncio.run(_drive(url, bodies, clients))
        metrics = httpx.get(url + "/metrics").text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    pairs = sum(len(b["documents"]) for b in bodies)
    def delta(name: str) -> float:
        return _metric(metrics, name) - _metric(before, name)

    batches = delta("scorer_batches_total")
    requests = delta("scorer_batched_requests_total")
    qs = statistics.quantiles(latencies, n=100)
    return {
        "batching": batching, "requests": len(bodies), "pairs": pairs, "seconds": wall,
        "requests_per_s": len(bodies) / wall, "pairs_per_s": pairs / wall,
        "p50_ms": qs[49] * 1000, "p95_ms": qs[94] * 1000,
        "requests_per_model_call": requests / batches if batches else 0.0,
        # Share of the wall time the model thread was busy: near 1 means the model is the limit.
        "model_busy": delta("scorer_model_seconds_total") / wall,
        "scores": scores,
    }


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: the bundled MiniLM)")
    p.add_argument("--cross-encoder", action="store_true",
                   help="use a MiniLM-shaped cross-encoder built by bench.models")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=640, help="total requests per mode")
    p.add_argument("--docs-per-request", type=int, default=4)
    p.add_argument("--doc-chars", type=int, default=400, help="documents are cut to this length")
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="the server's sequences per forward pass (scorer serve --batch-size)")
    p.add_argument("--server-threads", type=int, default=None,
                   help="torch threads in the server (OMP_NUM_THREADS; default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    if args.cross_encoder:
        try:
            from bench.models import minilm_shaped_cross_encoder
        except ImportError as exc:
            raise SystemExit(f"--cross-encoder needs bench/models.py ({exc}); "
                             "pass --model PATH instead.") from exc
        model = str(minilm_shaped_cross_encoder())
    elif args.model:
        model = args.model
    else:
        from engine import default_model_path

        model = default_model_path()
    bodies = _workload(args.requests, args.docs_per_request, args.doc_chars)
    warmup = _workload(args.clients, args.docs_per_request, args.doc_chars)
    extra = ["--batch-wait-ms", str(args.batch_wait_ms), "--batch-size", str(args.batch_size)]
    rows = [_run_mode(model, batching, bodies, warmup, args.clients, extra, args.server_threads)
            for batching in (True, False)]
    on, off = rows
    diff = max(abs(a - b) for x, y in zip(on["scores"], off["scores"], strict=True)
               for a, b in zip(x, y, strict=True))
    for row in rows:
        del row["scores"]
    summary = {"model": model, "clients": args.clients, "docs_per_request": args.docs_per_request,
               "cpu_count": os.cpu_count(), "server_threads": args.server_threads, "modes": rows,
               "speedup": on["requests_per_s"] / off["requests_per_s"],
               "max_score_diff_on_vs_off": diff}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model {model}\n{args.clients} concurrent clients, {args.requests} /rerank requests "
          f"of 1 query x {args.docs_per_request} documents ({args.doc_chars} chars max), "
          f"{os.cpu_count()} CPUs, server torch threads: {args.server_threads or 'default'}, "
          f"--batch-size {args.batch_size}")
    print(f"{'micro-batching':>14}  {'req/s':>8}  {'pairs/s':>8}  {'p50 ms':>8}  {'p95 ms':>8}  "
          f"{'req/model call':>14}  {'model busy':>10}")
    for row in rows:
        print(f"{'on' if row['batching'] else 'off':>14}  {row['requests_per_s']:8.1f}  "
              f"{row['pairs_per_s']:8.1f}  {row['p50_ms']:8.1f}  {row['p95_ms']:8.1f}  "
              f"{row['requests_per_model_call']:14.1f}  {row['model_busy']:10.0%}")
    print(f"speed-up {summary['speedup']:.2f}x; largest score difference on vs off {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
