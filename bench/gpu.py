"""The local GPU engine on one CUDA card: parity, then ours against CrossEncoder fp16.

One command on a CUDA machine (nothing is downloaded; the models are built from the bundled
MiniLM by bench/models.py):

    python -m bench.gpu [--repeats 10] [--pairs 1000] [--json]

It prints the card, then

1. parity on the real-encoder copy (MiniLM weights + a fixed head): ours float32 on the GPU
   against sentence-transformers float32 on the CPU, max |diff| ≤ 1e-5; ours float16 and
   bfloat16 against it by rankings (Spearman ≥ 0.999, top-10 ≥ 0.99 per query);
2. that the padding-free path ran: our cross-encoder's packed forward exists on CUDA, its
   linear layers are cuBLAS (no CPU-only oneDNN kernel), its attention torch's flash
   ``varlen_attn`` over the packed batch (half precision) or per sequence (float32);
3. speed on the MiniLM-shaped cross-encoder, 1×100 and 10×100 SciFact pairs, contenders
   alternating on the same card and inputs after a warm-up: ``CrossEncoder.predict`` fp16
   (batch 32, the baseline), CrossEncoder fp32, ours float32, ours float16, ours bfloat16, ours
   ``dtype="fast"`` — medians, min–max and ratios to the baseline.

Exit status 2 without a CUDA device; 1 when a parity check fails. Not a test (it needs a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.common import agreement, alternate, print_table, quiet_logs, workload

BASELINE = "sentence-transformers CrossEncoder fp16 (baseline)"


def _sync() -> None:
    import torch

    torch.cuda.synchronize()


def _st(path: str, dtype: Any) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cuda", model_kwargs={"dtype": dtype})


def _contenders(path: str) -> dict[str, Any]:
    import torch

    from engine import Scorer

    return {
        BASELINE: _st(path, torch.float16),
        "sentence-transformers CrossEncoder fp32": _st(path, torch.float32),
        "ours float32": Scorer.load(path, device="cuda", dtype="float32"),
        "ours float16": Scorer.load(path, device="cuda", dtype="float16"),
        "ours bfloat16": Scorer.load(path, device="cuda", dtype="bfloat16"),
        "ours fast": Scorer.load(path, device="cuda", dtype="fast"),
    }


def _calls(models: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]

    def st(model: Any) -> Any:
        def call() -> list[float]:
            out = model.predict(pairs, batch_size=32, show_progress_bar=False)
            _sync()
            return [float(x) for x in out]
        return call

    def ours(scorer: Any) -> Any:
        def call() -> list[float]:
            out = [r.score for r in scorer.score(queries, docs)]
            _sync()
            return out
        return call

    return {n: (ours(m) if n.startswith("ours") else st(m)) for n, m in models.items()}


def check_path(path: str) -> dict[str, Any]:
    """Which forward our GPU cross-encoder runs: packed or stock, kernels and attention."""
    import torch

    from engine import Scorer
    from engine.local import attention

    facts: dict[str, Any] = {}
    for dtype in ("float32", "float16"):
        backend = Scorer.load(path, device="cuda", dtype=dtype)._backend
        packed = getattr(backend, "_packed", None)
        encoder = packed[0] if packed else None
        varlen = False
        if encoder is not None and dtype == "float16":
            try:
                from torch.nn.attention.varlen import varlen_attn  # noqa: F401

                q = torch.randn(8, 64, device="cuda", dtype=torch.float16)
                shape = attention.AttentionShape(heads=2, kv_heads=2, head_dim=32, scale=0.2)
                attention._varlen(q, q, q, [(0, 5), (5, 8)], [(0, 5), (5, 8)], shape, 8)
                varlen = True
            except Exception as exc:  # reported, not fatal: per-sequence attention still works
                facts["varlen_error"] = f"{type(exc).__name__}: {exc}"
        facts[dtype] = {
            "packed_forward": encoder is not None,
            "onednn_linears": bool(encoder is not None and encoder.fused),
            "attention": ("varlen flash" if varlen else "per sequence") if encoder else "stock",
        }
    return facts


def parity(pairs: list[tuple[str, str]], per_query: int) -> tuple[dict[str, Any], bool]:
    """Ours on the GPU against sentence-transformers fp32 on the CPU, real-encoder copy."""
    from sentence_transformers import CrossEncoder

    from bench.models import minilm_real_cross_encoder
    from engine import Scorer

    path = str(minilm_real_cross_encoder())
    reference = [float(x) for x in CrossEncoder(path, device="cpu").predict(
        pairs, batch_size=32, show_progress_bar=False)]
    groups = [reference[i : i + per_query] for i in range(0, len(reference), per_query)]
    out: dict[str, Any] = {}
    ok = True
    for dtype in ("float32", "float16", "bfloat16"):
        scorer = Scorer.load(path, device="cuda", dtype=dtype)
        got = [r.score for r in scorer.score([q for q, _ in pairs], [d for _, d in pairs])]
        agree = agreement([got[i : i + per_query] for i in range(0, len(got), per_query)],
                          groups)
        passed = (agree.max_abs_diff <= 1e-5 if dtype == "float32"
                  else agree.spearman_min >= 0.999 and agree.top10_overlap_min >= 0.99)
        ok = ok and passed
        out[dtype] = {**agree.summary(), "passed": passed}
    return out, ok


def speed(pairs: list[tuple[str, str]], repeats: int) -> list[dict[str, Any]]:
    from bench.models import minilm_shaped_cross_encoder

    models = _contenders(str(minilm_shaped_cross_encoder()))
    timings = alternate(_calls(models, pairs), items=len(pairs), repeats=repeats,
                        warmup_with=_calls(models, pairs[:64]))
    base = timings[BASELINE].per_second
    return [{**t.summary(), "ratio_vs_baseline": round(t.per_second / base, 2)}
            for t in timings.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    quiet_logs()
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu needs a CUDA device; none is visible here.", file=sys.stderr)
        return 2
    from bench.common import machine
    from bench.models import minilm_shaped_cross_encoder

    report: dict[str, Any] = {
        "card": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "machine": machine(),
    }
    small = [(q, d) for q, docs in workload(1, 100) for d in docs]
    large = [(q, d) for q, docs in workload(10, 100) for d in docs]
    report["path"] = check_path(str(minilm_shaped_cross_encoder()))
    report["parity"], ok = parity(large, 100)
    report["speed"] = {"1x100": speed(small, args.repeats),
                       "10x100": speed(large, max(3, args.repeats // 3))}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['card']} (capability {report['capability']}), torch "
              f"{report['machine']['torch']}")
        print("forward:", json.dumps(report["path"]))
        print("parity vs sentence-transformers fp32 (CPU), real-encoder copy:")
        for dtype, row in report["parity"].items():
            print(f"  {dtype:9s} max|diff| {row['max_abs_diff']:.2e}  spearman(min) "
                  f"{row['spearman_min']:.5f}  top10(min) {row['top10_overlap_min']}  "
                  f"{'ok' if row['passed'] else 'FAILED'}")
        for shape, rows in report["speed"].items():
            table = [{"contender": r["name"], "pairs/s (median)": r["items_per_s"],
                      "min-max": "{}-{}".format(*r["items_per_s_min_max"]),
                      "x baseline": r["ratio_vs_baseline"]} for r in rows]
            print_table(f"cross-encoder {shape} on {report['card']}", table, list(table[0]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
