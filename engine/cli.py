"""The ``scorer`` command: rerank or score from the shell; subcommands register themselves."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .cli_options import add_model_options, load_from_args
from .errors import ScorerError

__all__ = ["main"]

# Extra subcommands (e.g. ``serve``) add themselves here: name → (add_arguments, run, help).
SUBCOMMANDS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[Any], int], str]
] = {}

# `serve` needs the server extra only when it runs (engine.server.cli imports no FastAPI).
from .server.cli import add_arguments as _serve_arguments  # noqa: E402
from .server.cli import run as _serve_run  # noqa: E402

SUBCOMMANDS["serve"] = (
    _serve_arguments, _serve_run,
    "serve a model over HTTP with vLLM's API (/score, /rerank, /v1/models; Cohere/Jina routes)",
)

_PROGRESS_MIN = 64  # below this many documents a progress bar is noise


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no warnings on stderr")


def _open(path: str) -> TextIO:
    if path == "-":
        if sys.stdin.isatty():
            # Otherwise the command would sit on an empty terminal with no word of why.
            print("scorer: reading from the terminal (no FILE given): type one item per line, "
                  "then Ctrl-D; or pass a FILE / pipe one in.", file=sys.stderr)
        return sys.stdin
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        raise SystemExit(f"scorer: error: no such file: {path}") from None
    except IsADirectoryError:
        raise SystemExit(f"scorer: error: {path} is a directory, not a file.") from None
    except PermissionError:
        raise SystemExit(f"scorer: error: can't read {path} (permission denied).") from None


def _read_documents(path: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Documents one per line, or JSONL objects with a ``text`` field. Returns texts + metadata."""
    with _open(path) as f:
        lines = f.read().splitlines()
    texts: list[str] = []
    meta: list[dict[str, Any]] = []
    skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            skipped += 1
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(
                    f"scorer: line {number} of {path} is not valid JSON: {exc}"
                ) from exc
            if not isinstance(obj.get("text"), str):
                raise SystemExit(f"scorer: line {number} of {path} has no string 'text' field.")
            texts.append(obj["text"])
            meta.append({"line": number, **{k: v for k, v in obj.items() if k != "text"}})
        else:
            texts.append(line)
            meta.append({"line": number})
    if skipped:
        print(f"scorer: skipped {skipped} blank line(s) in {path}", file=sys.stderr)
    if not texts:
        raise SystemExit(f"scorer: no documents in {path}.")
    return texts, meta


def _read_pairs(path: str) -> tuple[list[str], list[str]]:
    """Pairs as ``query<TAB>document`` lines or JSONL with ``query`` and ``document``."""
    queries: list[str] = []
    documents: list[str] = []
    with _open(path) as f:
        for number, line in enumerate(f.read().splitlines(), start=1):
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(
                        f"scorer: line {number} of {path} is not valid JSON: {exc}") from None
                if not isinstance(obj, dict):
                    raise SystemExit(f"scorer: line {number} of {path} is not a JSON object.")
                q, d = obj.get("query", obj.get("text_1")), obj.get("document", obj.get("text_2"))
            else:
                q, _, d = line.partition("\t")
                if not _:
                    raise SystemExit(
                        f"scorer: line {number} of {path} has no TAB; write query<TAB>document."
                    )
            if not isinstance(q, str) or not isinstance(d, str):
                raise SystemExit(f"scorer: line {number} of {path} needs a query and a document.")
            queries.append(q)
            documents.append(d)
    if not queries:
        raise SystemExit(f"scorer: no pairs in {path}.")
    return queries, documents


def _progress(total: int, quiet: bool = False) -> Any:
    if quiet or total < _PROGRESS_MIN or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=total, unit="doc", file=sys.stderr, leave=False)
    return bar, bar.update


def _snippet(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _cmd_rerank(args: argparse.Namespace) -> int:
    texts, meta = _read_documents(args.file)
    scorer = load_from_args(args)
    bar, update = _progress(len(texts), args.quiet)
    try:
        results = scorer.score(args.query, texts, progress=update)
    finally:
        if bar is not None:
            bar.close()
    from .ranking import rank

    ranked = rank(results, texts, top_n=args.top_n)
    if args.json:
        for pos, r in enumerate(ranked, start=1):
            print(json.dumps({"rank": pos, "index": r.index, "score": r.score,
                              "truncated": r.truncated, **meta[r.index], "text": r.document},
                             ensure_ascii=False))
        return 0
    print(f"{'rank':>4}  {'index':>5}  {'score':>10}  document")
    for pos, r in enumerate(ranked, start=1):
        flag = " [truncated]" if r.truncated else ""
        print(f"{pos:>4}  {r.index:>5}  {r.score:>10.6f}  {_snippet(str(r.document))}{flag}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    if args.query is not None:
        documents, _ = _read_documents(args.file)
        queries: list[str] | str = args.query
    else:
        queries, documents = _read_pairs(args.file)
    scorer = load_from_args(args)
    bar, update = _progress(len(documents), args.quiet)
    try:
        results = scorer.score(queries, documents, progress=update)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        for r in results:
            print(json.dumps({"index": r.index, "score": r.score, "truncated": r.truncated,
                              "num_tokens": r.num_tokens}))
        return 0
    if isinstance(queries, str):
        print(f"{'index':>5}  {'score':>10}  document")
        for r in results:
            flag = " [truncated]" if r.truncated else ""
            print(f"{r.index:>5}  {r.score:>10.6f}  {_snippet(documents[r.index])}{flag}")
        return 0
    # Pairs: each row shows its own query too, or rows of one query would look alike.
    print(f"{'index':>5}  {'score':>10}  {'query':<30}  document")
    for r in results:
        flag = " [truncated]" if r.truncated else ""
        print(f"{r.index:>5}  {r.score:>10.6f}  {_snippet(queries[r.index], 30):<30}  "
              f"{_snippet(documents[r.index], 50)}{flag}")
    return 0


class _Parser(argparse.ArgumentParser):
    """The ``scorer`` parser; ``serve`` also takes vLLM's engine flags, as ``vllm serve``."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        if getattr(ns, "command", None) == "serve":
            extras = _vllm_serve_extras(ns, extras)
        return ns, extras


def _vllm_serve_extras(ns: argparse.Namespace, extras: list[str]) -> list[str]:
    """Take vLLM engine flags (accepted, no effect here) and ``--hf-overrides.KEY VALUE``
    (merged into hf_overrides) out of ``extras``; return what is still unknown."""
    from .cli_options import vllm_json
    from .vllm_args import ENGINE_ARGS

    left: list[str] = []
    i = 0
    while i < len(extras):
        token = extras[i]
        name, eq, value = token.partition("=")
        key = name.lstrip("-").replace("-", "_")
        takes_value = not eq and i + 1 < len(extras) and not extras[i + 1].startswith("--")
        if token.startswith("--") and key.startswith("hf_overrides."):
            raw = value if eq else (extras[i + 1] if takes_value else "true")
            overrides = ns.hf_overrides if isinstance(ns.hf_overrides, dict) else {}
            ns.hf_overrides = {**overrides, key.split(".", 1)[1]: vllm_json(raw)}
        elif not (token.startswith("--") and key in ENGINE_ARGS):
            left.append(token)
            i += 1
            continue
        i += 2 if takes_value else 1
    return left


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scorer", description="Score and rerank text with a local model (vLLM's scoring)."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"scorer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    rr = sub.add_parser("rerank", help="rank documents against one query, best first")
    rr.add_argument("--query", "-q", required=True)
    rr.add_argument("--top-n", type=int, default=None, help="keep the best N (default: all)")
    rr.add_argument("file", nargs="?", default="-",
                    help="documents, one per line or JSONL with 'text' ('-' = stdin)")
    add_model_options(rr)
    _add_output_args(rr)
    rr.set_defaults(run=_cmd_rerank)
    sc = sub.add_parser("score", help="score pairs in input order")
    sc.add_argument("--query", "-q", default=None,
                    help="score every document against this query (1:N); without it FILE holds "
                    "pairs as query<TAB>document or JSONL with query/document")
    sc.add_argument("file", nargs="?", default="-",
                    help="with --query: documents, one per line or JSONL with 'text'; without: "
                    "pairs as query<TAB>document or JSONL with query/document ('-' = stdin)")
    add_model_options(sc)
    _add_output_args(sc)
    sc.set_defaults(run=_cmd_score)
    for name, (add_arguments, run, help_line) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scorer`` console script."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="scorer: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        logging.getLogger("engine").setLevel(logging.ERROR)
    try:
        return int(args.run(args))
    except ScorerError as exc:
        print(f"scorer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
