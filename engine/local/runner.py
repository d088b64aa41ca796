"""The one batch loop under every local backend (vLLM's model runner, in miniature).

For one call a backend hands the runner its three :class:`Stages`: ``prepare`` turns some of the
call's items (pairs or texts) into unpadded token ids on the CPU, ``forward`` runs one batch
through the model (the only code that touches the device) and ``head`` turns the model's output
into the batch's rows (scores, sentence vectors, token vectors). The runner owns the rest:

- windows of :data:`~engine.local.batching.WINDOW` items, so the token ids of a 10,000-document
  call are never all held at once;
- token-budget batch plans, longest first, for the packed (padding-free) or the padded forward;
- a document cache's get-or-encode: cached items skip prepare and forward, and a window's plan
  depends on its items alone, so a call served from the cache batches exactly as the call that
  filled it (and gives bit-identical scores);
- progress after each batch, freed memory handed back in long calls, and each item's truncation
  flag and token count.

Each batch's rows go to the caller's ``on_batch`` (which scatters them where they belong) before
the runner lets go of them, so a long call holds one batch of model output at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from .batching import (
    plan_batches,
    release_after_each_batch,
    release_freed_memory,
    windows,
)
from .doc_cache import CachedEncoding, EncodingCache
from .packed import use_packed

__all__ = ["BatchRunner", "Coverage", "Prepared", "RowCache", "Stages"]

Out = TypeVar("Out")
ProgressFn = Callable[[int], None]
# One batch of unpadded ids, its token type ids (or None) and whether to take the packed forward.
ForwardFn = Callable[[list[list[int]], "list[list[int]] | None", bool], Any]


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """Model inputs of some items: unpadded token ids (and token types), and which were cut."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: list[bool]


@dataclass(frozen=True, kw_only=True)
class Stages(Generic[Out]):
    """What a backend plugs into the runner for one call.

    Attributes:
        prepare: item indices of the call → their model inputs (CPU only).
        forward: one batch → the model's output (the only stage on the device).
        head: (model output, the batch's ids) → the batch's rows, e.g. scores [B].
        packed: the model's padding-free forward, if it has one (decides the plan's cost model).
    """

    prepare: Callable[[list[int]], Prepared]
    forward: ForwardFn
    head: Callable[[Any, list[list[int]]], Out]
    packed: object | None = None


@dataclass(frozen=True, kw_only=True)
class RowCache(Generic[Out]):
    """How a cacheable backend keeps rows between calls.

    Attributes:
        cache: the backend's encoding cache.
        keys: one key per item of the call (what decides its encoding besides the model).
        split: (a batch's rows, their token counts) → one (value, mask) per row, owning memory.
        join: cached entries → the rows of one batch, as ``head`` would have made them.
    """

    cache: EncodingCache
    keys: Sequence[Hashable]
    split: Callable[[Out, list[int]], list[tuple[torch.Tensor, torch.Tensor | None]]]
    join: Callable[[list[CachedEncoding]], Out]


@dataclass(frozen=True)
class Coverage:
    """Per item of a call: whether its input was cut, and how many tokens the model read
    (and, where asked for, the token ids themselves)."""

    truncated: list[bool]
    num_tokens: list[int]
    input_ids: list[list[int]] | None = None


class BatchRunner:
    """Runs calls through a backend's stages in token-budget batches (one per loaded backend)."""

    def __init__(self, *, batch_size: int, max_tokens_per_batch: int) -> None:
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch

    def run(
        self,
        n: int,
        stages: Stages[Out],
        on_batch: Callable[[list[int], Out], None],
        *,
        weights: Sequence[int] | None = None,
        progress: ProgressFn | None = None,
        cache: RowCache[Out] | None = None,
        keep_ids: bool = False,
    ) -> Coverage:
        """Run items ``0..n-1``; ``on_batch(items, rows)`` receives each batch in plan order.

        ``weights``: what each item counts for in ``progress`` (e.g. the pairs a distinct
        document stands for); 1 each by default. ``keep_ids``: keep every item's token ids in
        the coverage (vLLM's ``prompt_token_ids``; items served from the cache have none).
        """
        truncated = [False] * n
        num_tokens = [0] * n
        kept: list[list[int]] | None = [[] for _ in range(n)] if keep_ids else None
        for lo, hi in windows(n):
            self._window(
                lo, hi, n, stages, on_batch, truncated, num_tokens,
                weights=weights, progress=progress, cache=cache, kept=kept,
            )
        return Coverage(truncated=truncated, num_tokens=num_tokens, input_ids=kept)

    def scores(
        self, n: int, stages: Stages[torch.Tensor], *, progress: ProgressFn | None = None,
        keep_ids: bool = False,
    ) -> tuple[list[float], Coverage]:
        """Run a call whose head gives one score per row ([B] tensors): Python floats in order."""
        out = [0.0] * n

        def keep(items: list[int], values: torch.Tensor) -> None:
            for i, v in zip(items, values.tolist(), strict=True):
                out[i] = float(v)

        coverage = self.run(n, stages, keep, progress=progress, keep_ids=keep_ids)
        return out, coverage

    def rows(
        self, n: int, stages: Stages[torch.Tensor], *, weights: Sequence[int] | None = None,
        progress: ProgressFn | None = None, cache: RowCache[torch.Tensor] | None = None,
        keep_ids: bool = False,
    ) -> tuple[torch.Tensor, Coverage]:
        """Run a call whose head gives one vector per row ([B, D]): all of them [n, D], on CPU."""
        out: list[torch.Tensor] = []  # the [n, D] result, made once the width is known

        def keep(items: list[int], values: torch.Tensor) -> None:
            values = values.float().cpu()  # [B, D]
            if not out:
                out.append(torch.empty((n, values.shape[-1]), dtype=torch.float32))
            out[0][items] = values

        coverage = self.run(n, stages, keep, weights=weights, progress=progress, cache=cache,
                            keep_ids=keep_ids)
        return out[0], coverage

    # -- one window ------------------------------------------------------------------------------
    def _window(
        self, lo: int, hi: int, n: int, stages: Stages[Out],
        on_batch: Callable[[list[int], Out], None], truncated: list[bool], num_tokens: list[int],
        *, weights: Sequence[int] | None, progress: ProgressFn | None,
        cache: RowCache[Out] | None, kept: list[list[int]] | None = None,
    ) -> None:
        size = hi - lo
        entries: list[CachedEncoding | None] = (
            [cache.cache.get(cache.keys[lo + k]) for k in range(size)] if cache is not None
            else [None] * size
        )
        miss = [k for k, entry in enumerate(entries) if entry is None]
        ids: list[list[int]] = [[] for _ in range(size)]
        types: list[list[int]] | None = None
        if miss:
            prep = stages.prepare([lo + k for k in miss])
            if prep.token_type_ids is not None:
                types = [[] for _ in range(size)]
            for j, k in enumerate(miss):
                ids[k] = prep.input_ids[j]
                truncated[lo + k] = prep.truncated[j]
                if kept is not None:
                    kept[lo + k] = prep.input_ids[j]
                if types is not None and prep.token_type_ids is not None:
                    types[k] = prep.token_type_ids[j]
        sizes = [len(ids[k]) if entry is None else entry.num_tokens
                 for k, entry in enumerate(entries)]
        for k, entry in enumerate(entries):
            num_tokens[lo + k] = sizes[k]
            if entry is not None:
                truncated[lo + k] = entry.truncated
        packed = use_packed(stages.packed, sizes)
        plan = plan_batches(
            sizes, max_batch_size=self.batch_size,
            max_tokens_per_batch=self.max_tokens_per_batch, padded=not packed,
        )
        release = release_after_each_batch(n, len(plan))
        if release and miss:  # what the tokenizer freed (its encodings of the whole window)
            release_freed_memory()
        for batch in plan:
            todo = [k for k in batch if entries[k] is None]
            rows = self._batch_rows(
                batch, todo, entries, ids, types, packed, stages, cache, lo, truncated
            )
            items = [lo + k for k in batch]
            on_batch(items, rows)
            del rows  # before the release: the batch's tensors are what it hands back
            if progress is not None:
                progress(len(batch) if weights is None else sum(weights[i] for i in items))
            if release and todo:  # a batch served from the cache freed nothing
                release_freed_memory()

    @staticmethod
    def _batch_rows(
        batch: list[int], todo: list[int], entries: list[CachedEncoding | None],
        ids: list[list[int]], types: list[list[int]] | None, packed: bool, stages: Stages[Out],
        cache: RowCache[Out] | None, lo: int, truncated: list[bool],
    ) -> Out:
        """The batch's rows: run the model on what the cache lacks, the cache for the rest."""
        if todo:
            batch_ids = [ids[k] for k in todo]
            batch_types = [types[k] for k in todo] if types is not None else None
            fresh = stages.head(stages.forward(batch_ids, batch_types, packed), batch_ids)
            if cache is None:
                return fresh
            lengths = [len(s) for s in batch_ids]
            for k, (value, mask), n_tokens in zip(
                todo, cache.split(fresh, lengths), lengths, strict=True
            ):
                entry = CachedEncoding(
                    value=value, mask=mask, truncated=truncated[lo + k], num_tokens=n_tokens
                )
                entries[k] = entry
                cache.cache.put(cache.keys[lo + k], entry)
            if len(todo) == len(batch):
                return fresh
        assert cache is not None  # without a cache every item is in ``todo``
        return cache.join([entry for entry in (entries[k] for k in batch) if entry is not None])
