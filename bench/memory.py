"""Peak resident memory of scoring many documents, each run in a fresh process.

For a scorer type and dtype, two child processes each load the model, warm it up on 4 pairs,
reset the kernel's peak-RSS mark, then score one query against N documents (distinct SciFact
passages, numbered so none repeats): once with N = one batch (32 documents), once with
N = ``--docs`` (10,000 by default). Reported per run: RSS after loading (the model's own
size plus the interpreter and libraries), and the peak RSS above it while scoring. The target:
the 10,000-document peak stays within one batch's worth (the one-batch run's peak, median of
three fresh runs) above the loaded model.

Run: ``python -m bench.memory [--docs 10000] [--score-type cross-encoder] [--dtype bfloat16]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def _status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmHWM), 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRSS:
    """Peak RSS since :meth:`reset`: the kernel's VmHWM where it can be reset, else sampling."""

    def __init__(self) -> None:
        self.sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.kernel_reset = False

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled = max(self.sampled, _status("VmRSS"))
            time.sleep(0.002)

    def reset(self) -> None:
        try:
            # "5" resets the peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0).
            Path("/proc/self/clear_refs").write_text("5")
            self.kernel_reset = True
        except OSError:
            self.kernel_reset = False
        self.sampled = _status("VmRSS")
        if not self._thread.is_alive():
            self._thread.start()

    def peak(self) -> int:
        self._stop.set()
        self._thread.join()
        hwm = _status("VmHWM") if self.kernel_reset else 0
        return max(hwm, self.sampled)


def documents(n: int) -> list[str]:
    from bench.common import passages

    pool = passages()
    return [f"{pool[i % len(pool)]} ({i})" for i in range(n)]


def child(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import quiet_logs

    quiet_logs()
    import torch

    from bench.models import minilm_path, minilm_shaped_cross_encoder
    from engine import Scorer
    from engine.datasets import load_scifact_mini

    query = next(iter(load_scifact_mini().queries.values()))
    docs = documents(args.docs)  # built before the baseline: the input is the caller's memory
    before = _status("VmRSS")
    if args.score_type == "cross-encoder":
        path = minilm_shaped_cross_encoder()
    else:
        path = minilm_path()
    scorer = Scorer.load(path, score_type=args.score_type, dtype=args.dtype)
    scorer.score(query, documents(4))  # warm-up: first-call allocations are not per-document
    params = scorer.weights_bytes
    loaded = _status("VmRSS")
    peak = PeakRSS()
    peak.reset()
    start = time.perf_counter()
    results = scorer.score(query, docs)
    seconds = time.perf_counter() - start
    top = peak.peak()
    assert len(results) == len(docs)
    return {
        "score_type": args.score_type, "dtype": args.dtype, "docs": args.docs,
        "batch_size": scorer.config.batch_size,
        "max_tokens_per_batch": scorer.config.max_tokens_per_batch,
        "torch_threads": torch.get_num_threads(),
        "weights_mib": round(params / MIB, 1),
        "rss_before_load_mib": round(before / MIB, 1),
        "rss_after_load_mib": round(loaded / MIB, 1),
        "peak_above_loaded_mib": round((top - loaded) / MIB, 1),
        "peak_from": "VmHWM" if peak.kernel_reset else "sampled VmRSS",
        "seconds": round(seconds, 1),
    }


def _child_run(n: int, *, score_type: str, dtype: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", "--docs", str(n),
         "--score-type", score_type, "--dtype", dtype],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# The one-batch peak moves by ±10% from process to process (where glibc and oneDNN happen to
# put things), so the yardstick is the median of a few fresh runs.
ONE_BATCH_RUNS = 3


def measure(*, score_type: str, dtype: str, docs: int) -> dict[str, Any]:
    """One-batch runs (median of ONE_BATCH_RUNS) and one ``docs``-document run, each fresh."""
    ones = [_child_run(32, score_type=score_type, dtype=dtype) for _ in range(ONE_BATCH_RUNS)]
    ones.sort(key=lambda r: r["peak_above_loaded_mib"])
    one = dict(ones[len(ones) // 2])
    one["peak_above_loaded_mib_min_max"] = [ones[0]["peak_above_loaded_mib"],
                                            ones[-1]["peak_above_loaded_mib"]]
    many = _child_run(docs, score_type=score_type, dtype=dtype)
    ratio = many["peak_above_loaded_mib"] / one["peak_above_loaded_mib"]
    return {
        "workload": f"peak memory, {score_type} {dtype}, 1 query x {docs} documents",
        "one_batch": one, "many": many, "ratio_to_one_batch": round(ratio, 2),
        "within_one_batch": ratio <= 1.1,
    }


def run(*, quick: bool = False, docs: int | None = None) -> list[dict[str, Any]]:
    n = docs or (500 if quick else 10_000)
    return [measure(score_type="cross-encoder", dtype="bfloat16" if quick else "float32", docs=n)]


def show(results: list[dict[str, Any]]) -> None:
    from bench.common import print_table

    for res in results:
        rows = []
        one_label = f"one batch (32 docs, median of {ONE_BATCH_RUNS})"
        for label, r in ((one_label, res["one_batch"]), (f"{res['many']['docs']} docs",
                                                          res["many"])):
            spread = r.get("peak_above_loaded_mib_min_max")
            rows.append({
                "run": label, "weights MiB": r["weights_mib"],
                "RSS after load MiB": r["rss_after_load_mib"],
                "peak above loaded MiB": r["peak_above_loaded_mib"],
                "min-max": "{}-{}".format(*spread) if spread else "",
                "seconds": r["seconds"], "measured by": r["peak_from"],
            })
        print_table(res["workload"], rows, list(rows[0]))
        print(f"peak / one batch: {res['ratio_to_one_batch']}x; within one batch's worth (+10%): "
              f"{res['within_one_batch']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="documents (default 10,000)")
    parser.add_argument("--score-type", default="cross-encoder",
                        choices=["cross-encoder", "bi-encoder", "late-interaction"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quick", action="store_true", help="500 documents, bfloat16")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.quick or args.docs is None and args.score_type == "cross-encoder" and \
            args.dtype == "float32":
        results = run(quick=args.quick, docs=args.docs)
    else:
        results = [measure(score_type=args.score_type, dtype=args.dtype,
                           docs=args.docs or 10_000)]
    from bench.common import emit

    emit(results, show, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
