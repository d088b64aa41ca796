"""What every benchmark shares: data, the alternating timer, statistics, agreement, the machine.

Timings on a shared 2-core machine are noisy, so each workload runs its contenders in one process
and alternates them (A B A B ...) after a warm-up; the ratio of medians taken that way is the
figure to trust, more than any absolute number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Agreement",
    "Timing",
    "agreement",
    "alternate",
    "machine",
    "passages",
    "quiet_logs",
    "spearman",
    "top_k_overlap",
    "workload",
]


def quiet_logs() -> None:
    """Keep benchmark output to the figures: no truncation warnings, no HF progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("engine").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


# -- data ----------------------------------------------------------------------------------------
def passages(min_words: int = 30, max_words: int = 350) -> list[str]:
    """SciFact mini abstracts of realistic passage length (title + text), in corpus order."""
    from engine.datasets import load_scifact_mini

    corpus = load_scifact_mini().corpus
    return [t for t in corpus.values() if min_words <= len(t.split()) <= max_words]


def workload(n_queries: int, docs_per_query: int, *, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n_queries`` SciFact queries, each with ``docs_per_query`` passages (a seeded draw)."""
    from engine.datasets import load_scifact_mini

    data = load_scifact_mini()
    pool = passages()
    rng = random.Random(seed)
    queries = list(data.queries.values())[:n_queries]
    return [(q, rng.sample(pool, docs_per_query)) for q in queries]


# -- timing --------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of one contender, and what one run processes."""

    name: str
    items: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_second(self) -> float:
        return self.items / self.median

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": self.items,
            "runs": len(self.seconds),
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "items_per_s": round(self.per_second, 2),
            "items_per_s_min_max": [
                round(self.items / max(self.seconds), 2), round(self.items / min(self.seconds), 2)
            ],
        }


def alternate(
    contenders: dict[str, Callable[[], Any]], *, items: int, repeats: int, warmup: int = 1,
    warmup_with: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, Timing]:
    """Time each contender ``repeats`` times, interleaved A B C A B C ..., after a warm-up.

    The warm-up runs each contender ``warmup`` times, or each of ``warmup_with`` (a smaller
    call per contender) instead. Interleaving spreads other processes' load over all
    contenders alike, so ratios of medians stay meaningful on a busy machine where absolute
    figures swing.
    """
    for _ in range(warmup):
        for fn in (warmup_with or contenders).values():
            fn()
    timings = {name: Timing(name=name, items=items) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            timings[name].seconds.append(time.perf_counter() - start)
    return timings


# -- agreement -----------------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks with ties averaged (what Spearman's rho needs)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long score lists."""
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else 1.0


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int = 10) -> float:
    """|top-k of a ∩ top-k of b| / k (ties broken by input order, as rerank does)."""
    def top(s: Sequence[float]) -> set[int]:
        return set(sorted(range(len(s)), key=lambda i: (-s[i], i))[:k])

    return len(top(a) & top(b)) / min(k, len(a))


@dataclass(frozen=True)
class Agreement:
    """Scores of one contender against the float32 reference, per query group then pooled."""

    max_abs_diff: float
    spearman_mean: float
    spearman_min: float
    top10_overlap_mean: float
    top10_overlap_min: float

    def summary(self) -> dict[str, Any]:
        out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        out["max_abs_diff"] = float(f"{self.max_abs_diff:.3g}")  # tiny values must not round to 0
        return out


def agreement(ours: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> Agreement:
    """Compare per-query score lists (one list per query) with the reference's."""
    diffs = [abs(x - y) for o, r in zip(ours, reference, strict=True)
             for x, y in zip(o, r, strict=True)]
    rhos = [spearman(o, r) for o, r in zip(ours, reference, strict=True)]
    tops = [top_k_overlap(o, r) for o, r in zip(ours, reference, strict=True)]
    return Agreement(
        max_abs_diff=max(diffs), spearman_mean=statistics.fmean(rhos), spearman_min=min(rhos),
        top10_overlap_mean=statistics.fmean(tops), top10_overlap_min=min(tops),
    )


# -- machine -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, core count, SIMD features that matter here, and library versions."""
    import torch
    import transformers

    model, flags, family = platform.processor() or "unknown", set(), {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key == "model name" and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if key in ("cpu family", "model"):  # a bare "AMD EPYC" needs them
                    family[key] = line.split(":", 1)[1].strip()
                if key == "flags":
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if family:
        model += f" (family {family.get('cpu family')}, model {family.get('model')})"
    try:
        import sentence_transformers

        st_version = sentence_transformers.__version__
    except ImportError:
        st_version = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": st_version,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    print(f"\n{title}")
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def emit(results: Any, show: Callable[[Any], None], *, as_json: bool) -> None:
    """Print a workload's results: one JSON object, or its tables."""
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        show(results)
