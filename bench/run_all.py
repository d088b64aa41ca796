"""Run every benchmark workload and print one table each (``make bench``).

    python -m bench.run_all                 # full run (tens of minutes on 2 cores)
    python -m bench.run_all --quick         # a couple of minutes: 1x100 workloads, fewer runs
    python -m bench.run_all --json          # one JSON object on stdout instead of tables
    python -m bench.run_all --json out.json # tables on stdout, JSON written to out.json
    python -m bench.run_all --only cross_encoder,memory

Workloads: cross_encoder (bench/cross_encoder.py), bi_encoder and late_interaction
(bench/embedding_rerank.py), memory (bench/memory.py). Nothing here is a test: figures go to
bench/README.md by hand, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

WORKLOADS = ("cross_encoder", "bi_encoder", "late_interaction", "memory")


def run(name: str, *, quick: bool) -> list[dict[str, Any]]:
    if name == "cross_encoder":
        from bench import cross_encoder

        return cross_encoder.run(quick=quick)
    if name in ("bi_encoder", "late_interaction"):
        from bench import embedding_rerank

        return embedding_rerank.run(quick=quick, kinds=(name.replace("_", "-"),))
    if name == "memory":
        from bench import memory

        return memory.run(quick=quick)
    raise ValueError(f"unknown workload {name!r}; options: {', '.join(WORKLOADS)}")


def show(name: str, results: list[dict[str, Any]]) -> None:
    if name == "cross_encoder":
        from bench.cross_encoder import show as show_ce

        show_ce(results)
    elif name == "memory":
        from bench.memory import show as show_mem

        show_mem(results)
    else:
        from bench.embedding_rerank import show as show_emb

        show_emb(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1x100 workloads, 2-3 runs each, 500-document memory run")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write all results as JSON to PATH, or to stdout without PATH")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; options: {', '.join(WORKLOADS)}")

    from bench.common import machine, quiet_logs

    quiet_logs()
    command = "python -m bench.run_all " + " ".join(argv or sys.argv[1:])
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "command": command,
                              "workloads": {}}
    tables = args.json != "-"
    if tables:
        m = report["machine"]
        print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
              f"AVX512-BF16 {m['avx512_bf16']}, AMX {m['amx_bf16']}, GPU {m['cuda']}")
    for name in names:
        start = time.perf_counter()
        results = run(name, quick=args.quick)
        report["workloads"][name] = {"seconds": round(time.perf_counter() - start, 1),
                                     "results": results}
        if tables:
            show(name, results)
            sys.stdout.flush()
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
