"""Cross-encoder: ``sentence_transformers.CrossEncoder.predict`` against ``engine.Scorer``.

Workloads: 1×100 and 10×100 (query, SciFact passage of 30–350 words) pairs, each scored in one
call, on a MiniLM-L6-shaped BertForSequenceClassification with MiniLM's real BERT tokenizer.

Contenders (same process, same inputs, alternating after a warm-up):

- baseline: ``CrossEncoder.predict(pairs, batch_size=32)`` in float32 (what LangChain's
  ``CrossEncoderReranker`` and LlamaIndex's ``SentenceTransformerRerank`` run);
- ours exact: ``Scorer.load(path).score(queries, documents)`` (float32, the default on CPU);
- ours fast: ``Scorer.load(path, dtype="fast")`` (bfloat16 on CPUs with AMX or AVX512-BF16);
- vLLM's CPU build, ``LLM.score`` in float32 and bfloat16, in a worker process under
  ``.venv-vllm`` (bench/vllm_worker.py; ``make vllm-venv`` builds it; the rows are skipped with
  a message when it is absent, or with ``--no-vllm``). It runs alternately with the others like
  any contender (its process is idle while they run); pairs over 512 tokens are cut by vLLM's
  ``truncate_prompt_tokens`` (it refuses them otherwise), the others cut the document;
- for reference, the baseline itself in bfloat16 (1×100, full run only).

Agreement is measured on a copy with the real all-MiniLM-L6-v2 encoder weights (plus a fixed
random head), against the float32 baseline: random encoders score every passage alike, which
would make rank agreement meaningless.

Run: ``python -m bench.cross_encoder [--quick] [--json] [--no-vllm]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.common import agreement, alternate, emit, print_table, quiet_logs, workload
from bench.models import minilm_real_cross_encoder, minilm_shaped_cross_encoder

BASELINE = "sentence-transformers CrossEncoder fp32 (baseline)"
BASELINE_BF16 = "sentence-transformers CrossEncoder bf16"
EXACT = "ours exact (float32)"
FAST = "ours fast (dtype='fast': bfloat16)"
VLLM_FP32 = "vLLM CPU fp32 (LLM.score)"
VLLM_BF16 = "vLLM CPU bf16 (LLM.score)"


def _load(path: str, *, with_st_bf16: bool, with_vllm: bool, tag: str) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    from bench.contenders import VllmScorer, vllm_python
    from engine import Scorer

    models: dict[str, Any] = {
        BASELINE: CrossEncoder(path, device="cpu"),
        EXACT: Scorer.load(path, dtype="float32"),
        FAST: Scorer.load(path, dtype="fast"),
    }
    if with_st_bf16:
        models[BASELINE_BF16] = CrossEncoder(
            path, device="cpu", model_kwargs={"dtype": torch.bfloat16}
        )
    if with_vllm:
        python, why = vllm_python()
        if python is None:
            print(f"vLLM rows skipped: {why}")
        else:
            models[VLLM_FP32] = VllmScorer(python, path, dtype="float32", log_name=f"{tag}_fp32")
            models[VLLM_BF16] = VllmScorer(python, path, dtype="bfloat16",
                                           log_name=f"{tag}_bf16")
    return models


def _close(models: dict[str, Any]) -> None:
    for name in (VLLM_FP32, VLLM_BF16):
        if name in models:
            models[name].close()


def _calls(models: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """One zero-argument call per contender that scores ``pairs`` and returns the scores."""
    queries = [q for q, _ in pairs]
    documents = [d for _, d in pairs]

    def st(model: Any) -> Any:
        return lambda: [float(x) for x in model.predict(pairs, batch_size=32,
                                                         show_progress_bar=False)]

    def ours(scorer: Any) -> Any:
        return lambda: [r.score for r in scorer.score(queries, documents)]

    def vllm(worker: Any) -> Any:
        return lambda: worker.score(queries, documents)

    kinds = {EXACT: ours, FAST: ours, VLLM_FP32: vllm, VLLM_BF16: vllm}
    return {name: kinds.get(name, st)(m) for name, m in models.items()}


def run_shape(
    n_queries: int, docs_per_query: int, *, repeats: int, with_st_bf16: bool, with_vllm: bool
) -> dict[str, Any]:
    groups = workload(n_queries, docs_per_query)
    pairs = [(q, d) for q, docs in groups for d in docs]
    models = _load(str(minilm_shaped_cross_encoder()), with_st_bf16=with_st_bf16,
                   with_vllm=with_vllm, tag="vllm_shaped")
    try:
        timings = alternate(_calls(models, pairs), items=len(pairs), repeats=repeats,
                            warmup_with=_calls(models, pairs[:32]))
    finally:
        _close(models)
    del models
    real_models = _load(str(minilm_real_cross_encoder()), with_st_bf16=with_st_bf16,
                        with_vllm=with_vllm, tag="vllm_real")
    try:
        scores = {name: fn() for name, fn in _calls(real_models, pairs).items()}
    finally:
        _close(real_models)

    def per_query(flat: list[float]) -> list[list[float]]:
        return [flat[i : i + docs_per_query] for i in range(0, len(flat), docs_per_query)]

    reference = per_query(scores[BASELINE])
    base = timings[BASELINE].per_second
    rows = []
    for name, timing in timings.items():
        row = timing.summary()
        row["ratio_vs_baseline"] = round(timing.per_second / base, 2)
        for other, key in ((VLLM_FP32, "ratio_vs_vllm_fp32"), (VLLM_BF16, "ratio_vs_vllm_bf16")):
            if other in timings:
                row[key] = round(timing.per_second / timings[other].per_second, 2)
        row["agreement_vs_fp32"] = agreement(per_query(scores[name]), reference).summary()
        rows.append(row)
    return {"workload": f"cross-encoder {n_queries}x{docs_per_query}", "pairs": len(pairs),
            "load_average": list(os.getloadavg()), "rows": rows}


def run(*, quick: bool = False, with_vllm: bool = True) -> list[dict[str, Any]]:
    quiet_logs()
    results = [run_shape(1, 100, repeats=2 if quick else 5, with_st_bf16=not quick,
                         with_vllm=with_vllm)]
    if not quick:
        results.append(run_shape(10, 100, repeats=3, with_st_bf16=False, with_vllm=with_vllm))
    return results


def show(results: list[dict[str, Any]]) -> None:
    for res in results:
        rows = [
            {
                "contender": r["name"], "pairs/s (median)": r["items_per_s"],
                "min-max": "{}-{}".format(*r["items_per_s_min_max"]),
                "x baseline": r["ratio_vs_baseline"],
                "x vLLM fp32": r.get("ratio_vs_vllm_fp32", "-"),
                "x vLLM bf16": r.get("ratio_vs_vllm_bf16", "-"),
                "max|diff|": f"{r['agreement_vs_fp32']['max_abs_diff']:.1e}",
                "spearman": round(r["agreement_vs_fp32"]["spearman_min"], 5),
                "top10": r["agreement_vs_fp32"]["top10_overlap_min"],
            }
            for r in res["rows"]
        ]
        load = ", ".join(f"{x:.1f}" for x in res.get("load_average", []))
        print_table(f"{res['workload']} ({res['pairs']} pairs, one call each; load average "
                    f"at the end {load})", rows, list(rows[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1x100 only, 2 runs each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-vllm", action="store_true", help="leave vLLM's rows out")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, with_vllm=not args.no_vllm)
    emit(results, show, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
