"""Cross-encoder: ``sentence_transformers.CrossEncoder.predict`` against ``engine.Scorer``.

Workloads: 1×100 and 10×100 (query, SciFact passage of 30–350 words) pairs, each scored in one
call, on a MiniLM-L6-shaped BertForSequenceClassification with MiniLM's real BERT tokenizer.

Contenders (same process, same inputs, alternating after a warm-up):

- baseline: ``CrossEncoder.predict(pairs, batch_size=32)`` in float32 (what LangChain's
  ``CrossEncoderReranker`` and LlamaIndex's ``SentenceTransformerRerank`` run);
- ours exact: ``Scorer.load(path).score(queries, documents)`` (float32, the default on CPU);
- ours fast: ``Scorer.load(path, dtype="bfloat16")``;
- for reference, the baseline itself in bfloat16 (1×100, full run only).

Agreement is measured on a copy with the real all-MiniLM-L6-v2 encoder weights (plus a fixed
random head), against the float32 baseline: random encoders score every passage alike, which
would make rank agreement meaningless.

Run: ``python -m bench.cross_encoder [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import agreement, alternate, emit, print_table, quiet_logs, workload
from bench.models import minilm_real_cross_encoder, minilm_shaped_cross_encoder

BASELINE = "sentence-transformers CrossEncoder fp32 (baseline)"
BASELINE_BF16 = "sentence-transformers CrossEncoder bf16"
EXACT = "ours exact (float32)"
FAST = "ours fast (bfloat16)"


def _load(path: str, *, with_st_bf16: bool) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    from engine import Scorer

    models: dict[str, Any] = {
        BASELINE: CrossEncoder(path, device="cpu"),
        EXACT: Scorer.load(path),
        FAST: Scorer.load(path, dtype="bfloat16"),
    }
    if with_st_bf16:
        models[BASELINE_BF16] = CrossEncoder(
            path, device="cpu", model_kwargs={"dtype": torch.bfloat16}
        )
    return models


def _calls(models: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """One zero-argument call per contender that scores ``pairs`` and returns the scores."""
    queries = [q for q, _ in pairs]
    documents = [d for _, d in pairs]

    def st(model: Any) -> Any:
        return lambda: [float(x) for x in model.predict(pairs, batch_size=32,
                                                         show_progress_bar=False)]

    def ours(scorer: Any) -> Any:
        return lambda: [r.score for r in scorer.score(queries, documents)]

    return {name: (ours(m) if name in (EXACT, FAST) else st(m)) for name, m in models.items()}


def run_shape(
    n_queries: int, docs_per_query: int, *, repeats: int, with_st_bf16: bool
) -> dict[str, Any]:
    groups = workload(n_queries, docs_per_query)
    pairs = [(q, d) for q, docs in groups for d in docs]
    models = _load(str(minilm_shaped_cross_encoder()), with_st_bf16=with_st_bf16)
    timings = alternate(_calls(models, pairs), items=len(pairs), repeats=repeats,
                        warmup_with=_calls(models, pairs[:32]))
    del models
    real = _calls(_load(str(minilm_real_cross_encoder()), with_st_bf16=with_st_bf16), pairs)
    scores = {name: fn() for name, fn in real.items()}

    def per_query(flat: list[float]) -> list[list[float]]:
        return [flat[i : i + docs_per_query] for i in range(0, len(flat), docs_per_query)]

    reference = per_query(scores[BASELINE])
    base = timings[BASELINE].per_second
    rows = []
    for name, timing in timings.items():
        row = timing.summary()
        row["ratio_vs_baseline"] = round(timing.per_second / base, 2)
        row["agreement_vs_fp32"] = agreement(per_query(scores[name]), reference).summary()
        rows.append(row)
    return {"workload": f"cross-encoder {n_queries}x{docs_per_query}", "pairs": len(pairs),
            "rows": rows}


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    quiet_logs()
    results = [run_shape(1, 100, repeats=2 if quick else 5, with_st_bf16=not quick)]
    if not quick:
        results.append(run_shape(10, 100, repeats=3, with_st_bf16=False))
    return results


def show(results: list[dict[str, Any]]) -> None:
    for res in results:
        rows = [
            {
                "contender": r["name"], "pairs/s (median)": r["items_per_s"],
                "min-max": "{}-{}".format(*r["items_per_s_min_max"]),
                "x baseline": r["ratio_vs_baseline"],
                "max|diff|": f"{r['agreement_vs_fp32']['max_abs_diff']:.1e}",
                "spearman": round(r["agreement_vs_fp32"]["spearman_min"], 5),
                "top10": r["agreement_vs_fp32"]["top10_overlap_min"],
            }
            for r in res["rows"]
        ]
        print_table(f"{res['workload']} ({res['pairs']} pairs, one call each)", rows,
                    list(rows[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1x100 only, 2 runs each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    emit(results, show, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
