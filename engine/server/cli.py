"""``scorer serve MODEL``: load one model and serve vLLM's score/rerank API over HTTP."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from ..cli_options import add_model_options, load_from_args
from ..errors import InputError

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Serve vLLM's /score and /rerank API (plus /health, /v1/models, /metrics, "
                     "/docs) with one locally loaded model.")
    add_model_options(p, positional_model=True)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every route but health, "
                   "metrics, version and docs (default: the VLLM_API_KEY environment variable, "
                   "else no auth). Visible to anyone who can list processes (ps): prefer "
                   "--api-key-file or VLLM_API_KEY")
    p.add_argument("--api-key-file", default=None, metavar="PATH",
                   help="read the API key from this file (its first line), so it never shows "
                   "in the process list")
    p.add_argument("--served-model-name", "--served_model_name", default=None,
                   help="model name in responses and /v1/models (default: MODEL)")
    p.add_argument("--max-documents-per-request", type=int, default=1000,
                   help="larger requests answer 413 (default: 1000)")
    p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                   help="larger request bodies answer 413 (default: 8 MiB)")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="score each request on its own instead of merging concurrent ones")
    p.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="how long a request waits for others to join its batch (default: 2)")
    p.add_argument("--max-batch-pairs", type=int, default=256,
                   help="most pairs merged into one model call (default: 256)")
    p.add_argument("--max-batch-tokens", type=int, default=32768,
                   help="most (estimated) tokens merged into one model call (default: 32768)")
    p.add_argument("--timeout-graceful-shutdown", type=float, default=30.0,
                   help="seconds to finish in-flight requests on shutdown (default: 30)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])


def build_app(args: Any) -> tuple[Any, Any]:
    """The app ``scorer serve`` would run for these parsed arguments, and its ServerConfig."""
    from .._optional import require

    require("fastapi", extra="server", purpose="scorer serve")
    from .app import ServerConfig, create_app

    config = ServerConfig(
        served_model_name=args.served_model_name,
        api_key=api_key(args),
        max_documents_per_request=args.max_documents_per_request,
        max_body_bytes=args.max_body_bytes,
        batching=args.batching,
        batch_wait_ms=args.batch_wait_ms,
        max_batch_pairs=args.max_batch_pairs,
        max_batch_tokens=args.max_batch_tokens,
    )
    return create_app(load_from_args(args, vllm=True), config), config


def run(args: Any) -> int:
    """Bind the port, load the model, build the app and run uvicorn until interrupted."""
    from .._optional import require

    uvicorn = require("uvicorn", extra="server", purpose="scorer serve")
    # The port first: finding it taken after a minute of loading, and after printing
    # "serving", helps no one. The socket stays bound and is handed to uvicorn.
    sock = bind(args.host, args.port)
    app, config = build_app(args)
    scorer = app.state.scorer
    auth = "on" if config.api_key else "off"
    print(f"scorer: serving {scorer!r} as {config.served_model_name or scorer.model!r} at "
          f"http://{args.host}:{args.port} (auth {auth}, micro-batching "
          f"{'on' if config.batching else 'off'}); docs at /docs", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
    ))
    server.run(sockets=[sock])
    return 0


def api_key(args: Any) -> str | None:
    """--api-key-file, else --api-key, else VLLM_API_KEY; both flags at once is an error."""
    if args.api_key_file is not None:
        if args.api_key is not None:
            raise InputError("Pass --api-key or --api-key-file, not both.")
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.readline().strip()
        except OSError as exc:
            raise InputError(f"--api-key-file {args.api_key_file!r}: {exc.strerror}.") from None
        if not key:
            raise InputError(f"--api-key-file {args.api_key_file!r} is empty.")
        return key
    return args.api_key or os.environ.get("VLLM_API_KEY") or None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"Can't listen on {host}:{port}: {exc.strerror}. Another server may be using the "
            "port: stop it, or pass --port with a free one."
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
