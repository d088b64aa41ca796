"""LLM reranker: our padding-free decoder forward against the stock padded one, and vLLM.

Workload: 1×100 (query, SciFact passage) pairs in one call, on a small Qwen3-shaped reranker
(bench/models.py ``small_qwen3_reranker``: 8 layers, hidden 512, GQA 8/4 heads of 64; random
weights, MiniLM's tokenizer, no template: pairs are encoded as the tokenizer's text pair), inputs
cut to 512 tokens. Contenders, alternating after a warm-up:

- stock padded (float32): our backend with the padding-free decoder switched off, i.e. the
  transformers forward over right-padded batches (what this backend ran before, and what
  sentence-transformers-style wrappers of a decoder run);
- ours exact (float32) and ours fast (``dtype="fast"``) with the padding-free decoder;
- vLLM's CPU build, ``LLM.score``, float32 and bfloat16 (skipped with a message without
  ``.venv-vllm`` or with ``--no-vllm``).

Agreement is against the stock padded float32 scores (random weights: the max |diff| is the
figure; rankings of a random model mean little). Run: ``python -m bench.llm_reranker [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench.common import agreement, alternate, emit, print_table, quiet_logs, workload

STOCK = "stock padded forward (float32)"
EXACT = "ours exact (float32)"
FAST = "ours fast (dtype='fast')"
VLLM_FP32 = "vLLM CPU fp32 (LLM.score)"
VLLM_BF16 = "vLLM CPU bf16 (LLM.score)"


def run(*, quick: bool = False, with_vllm: bool = True) -> list[dict[str, Any]]:
    quiet_logs()
    from bench.contenders import VllmScorer, vllm_python
    from bench.models import small_qwen3_reranker
    from engine import Scorer

    ((query, docs),) = workload(1, 100)
    path = str(small_qwen3_reranker())
    stock = Scorer.load(path, dtype="float32", max_length=512)
    stock._backend._decoder = None  # type: ignore[attr-defined]  # this Scorer only
    # A second load shares the weights but builds its own backend (with the decoder).
    contenders: dict[str, Any] = {
        STOCK: stock,
        EXACT: Scorer.load(path, dtype="float32", max_length=512),
        FAST: Scorer.load(path, dtype="fast", max_length=512),
    }
    if contenders[EXACT]._backend._decoder is None:  # type: ignore[attr-defined]
        raise SystemExit("the padding-free decoder did not build for this model")
    workers = []
    if with_vllm:
        python, why = vllm_python()
        if python is None:
            print(f"vLLM rows skipped: {why}")
        else:
            for name, dtype in ((VLLM_FP32, "float32"), (VLLM_BF16, "bfloat16")):
                try:
                    worker = VllmScorer(python, path, dtype=dtype, log_name=f"llm_{dtype}",
                                        kwargs={"max_model_len": 512})
                except RuntimeError as exc:
                    print(f"{name} skipped: {exc}")
                    continue
                workers.append(worker)
                contenders[name] = worker

    def call(c: Any) -> Any:
        if hasattr(c, "close"):
            return lambda: c.score([query] * len(docs), docs)
        return lambda: [r.score for r in c.score(query, docs)]

    try:
        calls = {name: call(c) for name, c in contenders.items()}
        timings = alternate(calls, items=len(docs), repeats=2 if quick else 5)
        scores = {name: fn() for name, fn in calls.items()}
    finally:
        for worker in workers:
            worker.close()
    base = timings[STOCK].per_second
    rows = []
    for name, timing in timings.items():
        row = timing.summary()
        row["ratio_vs_stock"] = round(timing.per_second / base, 2)
        for other, key in ((VLLM_FP32, "ratio_vs_vllm_fp32"), (VLLM_BF16, "ratio_vs_vllm_bf16")):
            if other in timings:
                row[key] = round(timing.per_second / timings[other].per_second, 2)
        row["agreement_vs_stock"] = agreement([scores[name]], [scores[STOCK]]).summary()
        rows.append(row)
    return [{"workload": "LLM reranker 1x100 (small Qwen3 shape)", "pairs": len(docs),
             "load_average": list(os.getloadavg()), "rows": rows}]


def show(results: list[dict[str, Any]]) -> None:
    for res in results:
        rows = [{
            "contender": r["name"], "pairs/s (median)": r["items_per_s"],
            "min-max": "{}-{}".format(*r["items_per_s_min_max"]),
            "x stock": r["ratio_vs_stock"], "x vLLM fp32": r.get("ratio_vs_vllm_fp32", "-"),
            "x vLLM bf16": r.get("ratio_vs_vllm_bf16", "-"),
            "max|diff|": f"{r['agreement_vs_stock']['max_abs_diff']:.1e}",
        } for r in res["rows"]]
        load = ", ".join(f"{x:.1f}" for x in res["load_average"])
        print_table(f"{res['workload']} (load average at the end {load})", rows, list(rows[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs each instead of 5")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-vllm", action="store_true", help="leave vLLM's rows out")
    args = parser.parse_args(argv)
    emit(run(quick=args.quick, with_vllm=not args.no_vllm), show, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
