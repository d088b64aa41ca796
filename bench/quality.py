"""Ranking quality on the full SciFact set: BM25, a model's rerank, and the hybrids of the two.

    python -m bench.quality                             # /work/shared/data/scifact, top-100
    python -m bench.quality /path/to/scifact --top-k 100 --dtype auto
    python -m bench.quality --mini                      # SciFact mini (BM25 top-20), shipped
    python -m bench.quality --json out.json             # the tables, plus every figure as JSON

The folder is BEIR's layout plus a first-stage run (``runs/bm25_top100.tsv``: query-id,
corpus-id, rank, score); see ``engine.datasets.load_beir``. The model scores every candidate
once (documents repeated across queries come from the document cache), then the script
evaluates the fixed defaults the demo uses (RRF k=60, blend 0.5) and sweeps k and the blend
weight. The sweep is tuned on the test queries themselves, so read it as sensitivity, not as
a result: the defaults are the figures to quote.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.common import machine, quiet_logs

DEFAULT_DATA = "/work/shared/data/scifact"
K_SWEEP = (1, 5, 10, 20, 60, 100, 300)
WEIGHT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _metrics(data: Any, run: dict[str, list[str]], depth: int) -> dict[str, float]:
    from engine.datasets import mean_ndcg, mean_recall

    return {
        "ndcg@10": round(mean_ndcg(run, data.qrels), 4),
        "recall@3": round(mean_recall(run, data.qrels, 3), 4),
        "recall@10": round(mean_recall(run, data.qrels, 10), 4),
        f"recall@{depth}": round(mean_recall(run, data.qrels, depth), 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine import Scorer
    from engine.datasets import load_beir, load_scifact_mini
    from engine.demo import rows, score_candidates

    data = load_scifact_mini(bm25_only=True) if args.mini else load_beir(args.data,
                                                                        top_k=args.top_k)
    depth = max(len(c) for c in data.candidates.values())
    scorer = Scorer.load(args.model, dtype=args.dtype, doc_cache_size=len(data.corpus))
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, data.candidates.values())), unit="pair", file=sys.stderr,
                   desc="scoring", leave=False)
    scored = score_candidates(scorer, data, progress=None if bar is None else bar.update)
    if bar is not None:
        bar.close()
    table = [
        {"ranking": r.label, **_metrics(data, r.run, depth)}
        for r in rows(data, scored.scores)
    ]
    sweep_k = [
        {"k": k, **_metrics(data, rows(data, scored.scores, k=k)[2].run, depth)} for k in K_SWEEP
    ]
    sweep_w = []
    if data.first_stage_scores:
        sweep_w = [
            {"weight": w, **_metrics(data, rows(data, scored.scores, weight=w)[3].run, depth)}
            for w in WEIGHT_SWEEP
        ]
    return {
        "data": "SciFact mini (BM25 top-20)" if args.mini else f"{args.data} (top-{args.top_k})",
        "queries": len(data.candidates),
        "pairs": scored.pairs,
        "documents": len(data.corpus),
        "model": scorer.model,
        "score_type": scorer.score_type.value,
        "dtype": scorer.dtype,
        "seconds": round(scored.seconds, 1),
        "pairs_per_s": round(scored.pairs / scored.seconds, 1),
        "truncated": scored.truncated,
        "table": table,
        "sweep_rrf_k": sweep_k,
        "sweep_blend_weight": sweep_w,
        "machine": machine(),
    }


def _markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def show(result: dict[str, Any]) -> None:
    print(f"{result['data']}: {result['queries']} queries, {result['pairs']:,} pairs, "
          f"{result['documents']:,} documents; {result['model']} ({result['score_type']}, "
          f"{result['dtype']}): {result['seconds']} s, {result['pairs_per_s']} pairs/s, "
          f"{result['truncated']} pairs cut to fit.")
    print()
    print(_markdown(result["table"]))
    print()
    print("RRF k sweep (tuned on the test queries: sensitivity only)")
    print(_markdown(result["sweep_rrf_k"]))
    if result["sweep_blend_weight"]:
        print()
        print("Blend weight sweep (the model's share; tuned on the test queries: sensitivity only)")
        print(_markdown(result["sweep_blend_weight"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA,
                        help=f"a BEIR folder with runs/bm25_top100.tsv (default {DEFAULT_DATA})")
    parser.add_argument("--mini", action="store_true", help="SciFact mini instead (shipped)")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--dtype", default="fast", help='"fast" (default) or "auto" (exact)')
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write every figure as JSON to PATH (or stdout with no PATH)")
    args = parser.parse_args(argv)
    quiet_logs()
    start = time.perf_counter()
    result = run(args)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    show(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
