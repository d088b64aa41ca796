"""A bounded in-memory cache of document encodings for the bi-encoder and late-interaction paths.

Reranking often sees the same documents again (a corpus re-queried, a retriever's usual
candidates). Their encodings depend only on the model and the text, so a second call can skip
the model for them. One cache belongs to one loaded scorer, so the model, its dtype and device
are fixed; the key adds everything else that changes an encoding: the token limit it was cut
to, the overflow rule it was checked against, and ``use_activation`` (normalisation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from ..types import CacheInfo

__all__ = ["CachedEncoding", "EncodingCache", "encoding_key"]


@dataclass(frozen=True, kw_only=True)
class CachedEncoding:
    """One document's encoding, exactly as the score path made it.

    ``value``: the sentence vector [D] (bi-encoder) or token vectors [L, D] (late interaction),
    float32, owning its memory (a clone, never a view into a batch). ``mask``: late interaction's
    scoring mask [L] (BOS or punctuation left out), None for a bi-encoder.
    """

    value: torch.Tensor
    mask: torch.Tensor | None
    truncated: bool
    num_tokens: int


def encoding_key(text: str, *, limit: int, overflow: str, use_activation: bool) -> Hashable:
    """What decides a document's encoding besides the (fixed) model."""
    return (text, limit, overflow, use_activation)


class EncodingCache:
    """Least-recently-used map from :func:`encoding_key` to :class:`CachedEncoding`.

    Holds at most ``max_entries`` entries; adding one more drops the least recently used.
    Thread-safe (one lock), though a scorer already runs one call at a time.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be ≥ 1, got {max_entries}.")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, CachedEncoding] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> CachedEncoding | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, entry: CachedEncoding) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def info(self) -> CacheInfo:
        """Hits, misses and size, as ``functools.lru_cache``'s ``cache_info()``."""
        with self._lock:
            return CacheInfo(hits=self.hits, misses=self.misses, entries=len(self._entries),
                             max_entries=self.max_entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = 0
            self.misses = 0


def make_cache(size: int) -> EncodingCache | None:
    """The cache a ``doc_cache_size`` asks for: None for 0 (off)."""
    return EncodingCache(size) if size > 0 else None
