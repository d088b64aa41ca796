"""Where a cross-encoder call spends its time: torch.profiler over one 1×100 call, by operator.

Run: ``python -m bench.profile [--dtype bfloat16] [--rows 12]``. Prints the wall time of the
profiled call and the operators that take the most self time (matrix products of the linear
layers, attention, layer norms, copies), on the MiniLM-L6-shaped cross-encoder of
bench/cross_encoder.py.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args(argv)

    from bench.common import quiet_logs, workload
    from bench.models import minilm_shaped_cross_encoder

    quiet_logs()
    from torch.profiler import ProfilerActivity, profile

    from engine import Scorer

    ((query, docs),) = workload(1, 100)
    scorer = Scorer.load(minilm_shaped_cross_encoder(), dtype=args.dtype)
    scorer.score(query, docs)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        scorer.score(query, docs)
        wall = time.perf_counter() - start
    print(f"{args.dtype}: one 1x100 call, {wall:.2f} s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
