"""Dynamic micro-batching: concurrent requests share one model call.

Requests are queued on the event loop. One collector task takes the oldest request, waits a
short window (or until the pair budget is full) for others to join, merges what fits the
budget into one call, and runs it on the single model thread. While the model runs, new
requests queue up and form the next batch, so under load the batches grow by themselves and
an idle server adds at most the wait window to a request's latency.

Requests merge only when their options agree (``use_activation`` and ``truncate_prompt_tokens``
change the computation). Distinct query texts are shared between requests, so a bi-encoder or
late-interaction model encodes each query once per batch. If a merged call fails (e.g. one
request's input is too long with overflow="error"), each request is rerun alone so the error
reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ..calls import VllmTokenization
from ..errors import ScorerError
from ..media import ScoreContent, ScoreItem
from ..types import ScoreResult

__all__ = ["BatchStats", "MicroBatcher", "merge_jobs", "take_batch"]

# Score pairs that were already paired and validated: (queries, documents, query_index,
# use_activation=, truncate_prompt_tokens=) → results in pair order.
ScoreFn = Callable[..., list[ScoreResult]]


class ServerClosing(ScorerError):
    """The server is shutting down and takes no new work."""


# What one image counts for in the batch budget: its patch tokens are known only once the
# backend has decoded it, and Qwen2/3-VL's processors cap a default image near this many.
IMAGE_TOKENS_ESTIMATE = 1024


def estimate_tokens(item: ScoreItem) -> int:
    """A cheap token estimate (about 4 characters a token, a flat count per image) for the
    batch budget only."""
    if isinstance(item, ScoreContent):
        return sum(len(t) for t in item.texts) // 4 + 1 + IMAGE_TOKENS_ESTIMATE * len(item.images)
    return len(item) // 4 + 1


@dataclass(eq=False)
class Job:
    """One request waiting for the model."""

    queries: list[ScoreItem]
    documents: list[ScoreItem]
    query_index: list[int]
    use_activation: bool | None
    truncate_prompt_tokens: int | None
    future: asyncio.Future[list[ScoreResult]]
    cost: int = 0  # estimated tokens
    tokenization: VllmTokenization | None = None  # vLLM's rules (the server's requests)
    lora: str | None = None  # the LoRA adapter the request's model names (None: the base)

    def __post_init__(self) -> None:
        self.cost = sum(estimate_tokens(self.queries[q]) + estimate_tokens(d)
                        for q, d in zip(self.query_index, self.documents, strict=True))

    @property
    def key(self) -> tuple[bool | None, int | None, str, str | None]:
        # Only requests computed alike merge: the same activation, tokenization and adapter.
        return (self.use_activation, self.truncate_prompt_tokens, repr(self.tokenization),
                self.lora)


@dataclass
class BatchStats:
    """Counters the metrics endpoint reads. Only the event loop thread writes them."""

    batches: int = 0
    batched_requests: int = 0
    batched_pairs: int = 0
    model_seconds: float = 0.0
    pending_pairs: int = 0
    largest_batch_pairs: int = 0
    recent: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=256))


def take_batch(pending: collections.deque[Job], *, max_pairs: int, max_tokens: int) -> list[Job]:
    """Pop jobs from the left while they fit the pair and token budget (at least one job).

    Jobs whose caller has gone away (future already done) are dropped, not scored.
    """
    batch: list[Job] = []
    pairs = tokens = 0
    while pending:
        job = pending[0]
        if job.future.done():
            pending.popleft()
            continue
        n = len(job.documents)
        if batch and (pairs + n > max_pairs or tokens + job.cost > max_tokens):
            break
        batch.append(pending.popleft())
        pairs += n
        tokens += job.cost
    return batch


def merge_jobs(
    jobs: list[Job],
) -> tuple[list[ScoreItem], list[ScoreItem], list[int], list[int]]:
    """Concatenate jobs into one call; each distinct query appears once (a multimodal query is
    a frozen value, so equal parts, image URLs included, share one slot).

    Returns (queries, documents, query_index, offsets), where job j's pairs are
    ``offsets[j]:offsets[j + 1]`` of the merged call.
    """
    slot: dict[ScoreItem, int] = {}
    documents: list[ScoreItem] = []
    query_index: list[int] = []
    offsets = [0]
    for job in jobs:
        for q, d in zip(job.query_index, job.documents, strict=True):
            query_index.append(slot.setdefault(job.queries[q], len(slot)))
            documents.append(d)
        offsets.append(len(documents))
    return list(slot), documents, query_index, offsets


def _split(results: list[ScoreResult], start: int, stop: int) -> list[ScoreResult]:
    return [replace(r, index=r.index - start) for r in results[start:stop]]


class MicroBatcher:
    """Queues scoring requests and runs them on one model thread, merged when ``enabled``.

    Args:
        score_fn: scores resolved pairs (``Scorer._score_resolved``).
        enabled: merge concurrent requests; False scores each request on its own, in arrival
            order, on the same thread (the baseline of the benchmark).
        max_wait_s: how long the first request of a batch waits for company.
        max_batch_pairs / max_batch_tokens: the budget of one merged call; a single request
            larger than the budget still runs, alone.
    """

    def __init__(
        self,
        score_fn: ScoreFn,
        *,
        enabled: bool = True,
        max_wait_s: float = 0.002,
        max_batch_pairs: int = 256,
        max_batch_tokens: int = 32768,
    ) -> None:
        self._score_fn = score_fn
        self.enabled = enabled
        self.max_wait_s = max_wait_s
        self.max_batch_pairs = max_batch_pairs if enabled else 1
        self.max_batch_tokens = max_batch_tokens if enabled else 1
        self.stats = BatchStats()
        self._pending: collections.deque[Job] = collections.deque()
        self._has_work: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the collector on the running loop (submit() also starts it on first use)."""
        if self._task is not None:
            return
        self._closing = False
        self._has_work = asyncio.Event()
        self._full = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-model")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Refuse new work, finish everything queued, then stop the model thread."""
        if self._task is None:
            return
        self._closing = True
        assert self._has_work is not None
        self._has_work.set()
        await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def closing(self) -> bool:
        """True once stop() began: queued work finishes, new work is refused."""
        return self._closing

    # -- requests ----------------------------------------------------------------------------------
    async def submit(
        self, queries: list[ScoreItem], documents: list[ScoreItem], query_index: list[int], *,
        use_activation: bool | None, truncate_prompt_tokens: int | None = None,
        tokenization: VllmTokenization | None = None, lora: str | None = None,
    ) -> list[ScoreResult]:
        """Queue one request's pairs and wait for its results (in its own pair order)."""
        if self._closing:
            raise ServerClosing("The server is shutting down; retry against another replica.")
        self.start()
        assert self._has_work is not None and self._full is not None
        future: asyncio.Future[list[ScoreResult]] = asyncio.get_running_loop().create_future()
        job = Job(queries, documents, query_index, use_activation, truncate_prompt_tokens, future,
                  tokenization=tokenization, lora=lora)
        self._pending.append(job)
        self.stats.pending_pairs += len(documents)
        self._has_work.set()
        if self.stats.pending_pairs >= self.max_batch_pairs:
            self._full.set()
        return await future

    # -- the collector -----------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._has_work is not None and self._full is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._has_work.wait()
            if not self._pending:
                if self._closing:
                    return
                self._has_work.clear()
                continue
            if self.enabled and self.max_wait_s > 0 and not self._closing \
                    and self.stats.pending_pairs < self.max_batch_pairs:
                try:
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
                except asyncio.TimeoutError:
                    pass
            batch = take_batch(self._pending, max_pairs=self.max_batch_pairs,
                               max_tokens=self.max_batch_tokens)
            self.stats.pending_pairs = sum(len(j.documents) for j in self._pending)
            if self.stats.pending_pairs < self.max_batch_pairs:
                self._full.clear()
            if not batch:
                continue
            started = time.perf_counter()
            outcomes = await loop.run_in_executor(self._executor, self._score_batch, batch)
            self._record(batch, time.perf_counter() - started)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # the caller went away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _record(self, batch: list[Job], seconds: float) -> None:
        pairs = sum(len(j.documents) for j in batch)
        self.stats.batches += 1
        self.stats.batched_requests += len(batch)
        self.stats.batched_pairs += pairs
        self.stats.model_seconds += seconds
        self.stats.largest_batch_pairs = max(self.stats.largest_batch_pairs, pairs)
        self.stats.recent.append(len(batch))

    # -- on the model thread -----------------------------------------------------------------------
    def _score_batch(self, batch: list[Job]) -> list[list[ScoreResult] | BaseException]:
        """Score every job; one merged call per option group. Runs on the model thread."""
        out: dict[int, list[ScoreResult] | BaseException] = {}
        groups: dict[tuple[bool | None, int | None, str, str | None], list[int]] = {}
        for i, job in enumerate(batch):
            groups.setdefault(job.key, []).append(i)
        for members in groups.values():
            jobs = [batch[i] for i in members]
            try:
                queries, documents, query_index, offsets = merge_jobs(jobs)
                results = self._score_fn(queries, documents, query_index, **_options(jobs[0]))
                for j, i in enumerate(members):
                    out[i] = _split(results, offsets[j], offsets[j + 1])
            except Exception as exc:
                if len(jobs) == 1:
                    out[members[0]] = exc
                    continue
                # Find the culprit: each request alone, so only its own error reaches it.
                for i in members:
                    out[i] = self._score_alone(batch[i])
        return [out[i] for i in range(len(batch))]

    def _score_alone(self, job: Job) -> list[ScoreResult] | BaseException:
        try:
            return self._score_fn(job.queries, job.documents, job.query_index, **_options(job))
        except Exception as exc:
            return exc

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "max_wait_s": self.max_wait_s,
                "max_batch_pairs": self.max_batch_pairs, "max_batch_tokens": self.max_batch_tokens}


def _options(job: Job) -> dict[str, Any]:
    """The keyword options a merged call of jobs like ``job`` is scored with."""
    options: dict[str, Any] = {"use_activation": job.use_activation,
                               "truncate_prompt_tokens": job.truncate_prompt_tokens}
    if job.tokenization is not None:
        options["tokenization"] = job.tokenization
    if job.lora is not None:
        options["lora_request"] = job.lora
    return options
