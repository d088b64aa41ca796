"""Prometheus metrics in the plain text exposition format, written by hand (no extra package)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

from .batcher import BatchStats

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counters and a latency histogram per route; batch counters come from the batcher."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency_counts: dict[str, list[int]] = defaultdict(
            lambda: [0] * (len(_LATENCY_BUCKETS) + 1))
        self._latency_sum: dict[str, float] = defaultdict(float)
        self.in_flight = 0
        self.pairs = 0
        self.prompt_tokens = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, str(status))] += 1
            self._latency_counts[route][bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum[route] += seconds

    def add_scored(self, pairs: int, prompt_tokens: int) -> None:
        with self._lock:
            self.pairs += pairs
            self.prompt_tokens += prompt_tokens

    def render(self, batch: BatchStats) -> str:
        """The exposition text for ``/metrics``."""
        model = _labels(model=self.model)
        lines = [
            "# HELP scorer_requests_total HTTP requests answered, by route and status code.",
            "# TYPE scorer_requests_total counter",
        ]
        with self._lock:
            for (route, code), n in sorted(self._requests.items()):
                lines.append(f"scorer_requests_total{_labels(route=route, code=code)} {n}")
            lines += [
                "# HELP scorer_request_duration_seconds Time to answer a request, by route.",
                "# TYPE scorer_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self._latency_counts.items()):
                cumulative = 0
                for bound, n in zip((*_LATENCY_BUCKETS, float("inf")), counts, strict=True):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(
                        f"scorer_request_duration_seconds_bucket{_labels(route=route, le=le)} "
                        f"{cumulative}"
                    )
                lines.append(f"scorer_request_duration_seconds_sum{_labels(route=route)} "
                             f"{self._latency_sum[route]}")
                lines.append(f"scorer_request_duration_seconds_count{_labels(route=route)} "
                             f"{cumulative}")
            scalars: list[tuple[str, str, str, float]] = [
                ("scorer_requests_in_flight", "gauge", "Scoring requests being served now.",
                 self.in_flight),
                ("scorer_pairs_scored_total", "counter", "(query, document) pairs scored.",
                 self.pairs),
                ("scorer_prompt_tokens_total", "counter", "Tokens the model read.",
                 self.prompt_tokens),
            ]
        scalars += [
            ("scorer_batches_total", "counter", "Model calls made by the micro-batcher.",
             batch.batches),
            ("scorer_batched_requests_total", "counter", "Requests served through those calls.",
             batch.batched_requests),
            ("scorer_batched_pairs_total", "counter", "Pairs scored through those calls.",
             batch.batched_pairs),
            ("scorer_model_seconds_total", "counter", "Seconds spent in model calls.",
             round(batch.model_seconds, 6)),
            ("scorer_queue_pairs", "gauge", "Pairs waiting for the model.", batch.pending_pairs),
            ("scorer_largest_batch_pairs", "gauge", "Most pairs merged into one model call.",
             batch.largest_batch_pairs),
        ]
        for name, kind, help_text, value in scalars:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                      f"{name}{model} {value}"]
        return "\n".join(lines) + "\n"
