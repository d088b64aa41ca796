"""Bi-encoder and late-interaction rerank of 100 passages with the real all-MiniLM-L6-v2.

Contenders (same process, same query and passages, alternating after a warm-up):

- baseline, bi-encoder: ``SentenceTransformer.encode`` of the query and of the passages
  (batch 32, float32), then cosine;
- baseline, late interaction: ``SentenceTransformer.encode(output_value="token_embeddings")``,
  per-token L2 normalisation, MaxSim (what a hand-rolled ColBERT-style scorer on
  sentence-transformers does; PyLate is not installed here);
- ours cold, exact and fast: ``Scorer.rerank`` with no document cache, float32 / bfloat16;
- ours cached: ``Scorer.load(..., doc_cache_size=1000)`` after the passages were seen once, so
  only the query goes through the model.

"x cold" is the cached call's speed over ours cold exact: how much faster a rerank over
documents seen before is than encoding them again.

Run: ``python -m bench.bi_encoder`` / ``python -m bench.late_interaction`` (``--quick``,
``--json``), or ``python -m bench.embedding_rerank`` for both.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import agreement, alternate, emit, print_table, quiet_logs, workload
from bench.models import minilm_path

BASELINE = "sentence-transformers fp32 (baseline)"
COLD = "ours cold exact (float32)"
COLD_FAST = "ours cold fast (bfloat16)"
CACHED = "ours cached (float32, documents seen before)"


def _st_scores(kind: str, model: Any, query: str, docs: list[str]) -> list[float]:
    import torch
    import torch.nn.functional as F  # noqa: N812

    if kind == "bi-encoder":
        q = model.encode([query], batch_size=32, convert_to_tensor=True, show_progress_bar=False)
        d = model.encode(docs, batch_size=32, convert_to_tensor=True, show_progress_bar=False)
        return F.cosine_similarity(q, d, dim=-1).tolist()  # type: ignore[no-any-return]
    q = model.encode([query], output_value="token_embeddings", show_progress_bar=False)[0]
    d = model.encode(docs, batch_size=32, output_value="token_embeddings",
                     show_progress_bar=False)
    qn = F.normalize(q.float(), dim=-1)  # [Lq, H]
    out = []
    for tokens in d:
        sim = qn @ F.normalize(tokens.float(), dim=-1).T  # [Lq, Ld]
        out.append(float(sim.max(dim=1).values.sum()))
    del torch
    return out


def run_kind(kind: str, *, repeats: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from engine import Scorer

    ((query, docs),) = workload(1, 100)
    path = str(minilm_path())
    st = SentenceTransformer(path, device="cpu")
    scorers = {
        COLD: Scorer.load(path, score_type=kind),
        COLD_FAST: Scorer.load(path, score_type=kind, dtype="bfloat16"),
        CACHED: Scorer.load(path, score_type=kind, doc_cache_size=1000),
    }

    def ours(scorer: Any) -> Any:
        def call() -> list[float]:
            scores = [0.0] * len(docs)
            for r in scorer.rerank(query, docs):
                scores[r.index] = r.score
            return scores

        return call

    calls = {BASELINE: lambda: _st_scores(kind, st, query, docs)}
    calls.update({name: ours(s) for name, s in scorers.items()})
    scores = {name: fn() for name, fn in calls.items()}  # also fills the cache: docs now "seen"
    timings = alternate(calls, items=len(docs), repeats=repeats, warmup=0)
    reference = [scores[BASELINE]]
    base = timings[BASELINE].per_second
    cold = timings[COLD].per_second
    rows = []
    for name, timing in timings.items():
        row = timing.summary()
        row["ratio_vs_baseline"] = round(timing.per_second / base, 2)
        row["ratio_vs_ours_cold"] = round(timing.per_second / cold, 1)
        row["agreement_vs_fp32"] = agreement([scores[name]], reference).summary()
        rows.append(row)
    cache = scorers[CACHED].cache_info()
    assert cache is not None  # the cached contender is loaded with doc_cache_size
    return {"workload": f"{kind} rerank 1x100 (real MiniLM)", "pairs": len(docs), "rows": rows,
            "cache": {"entries": cache.entries, "hits": cache.hits, "misses": cache.misses}}


KINDS = ("bi-encoder", "late-interaction")


def run(*, quick: bool = False, kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    quiet_logs()
    return [run_kind(kind, repeats=2 if quick else 5) for kind in kinds]


def show(results: list[dict[str, Any]]) -> None:
    for res in results:
        rows = [
            {
                "contender": r["name"], "docs/s (median)": r["items_per_s"],
                "min-max": "{}-{}".format(*r["items_per_s_min_max"]),
                "x baseline": r["ratio_vs_baseline"], "x cold": r["ratio_vs_ours_cold"],
                "max|diff|": f"{r['agreement_vs_fp32']['max_abs_diff']:.1e}",
                "spearman": round(r["agreement_vs_fp32"]["spearman_min"], 5),
                "top10": r["agreement_vs_fp32"]["top10_overlap_min"],
            }
            for r in res["rows"]
        ]
        print_table(res["workload"], rows, list(rows[0]))


def main(argv: list[str] | None = None, *, kinds: tuple[str, ...] = KINDS) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs each instead of 5")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, kinds=kinds)
    emit(results, show, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
