"""The typed contract between ``Scorer`` and a loaded local backend (no torch import here).

:class:`engine.local.base.LocalBackend` implements it; ``Scorer`` depends only on this, so the
facade and its type checks never reach into a backend's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .calls import ScoreCall
from .config import ScorerConfig
from .types import CacheInfo, ScoreResult, ScoreType

__all__ = ["Backend", "EmbeddingBackend"]


@runtime_checkable
class Backend(Protocol):
    """A loaded model that scores already-paired, already-checked input."""

    @property
    def score_type(self) -> ScoreType: ...

    @property
    def config(self) -> ScorerConfig: ...

    @property
    def device(self) -> Any: ...  # a torch.device

    @property
    def dtype(self) -> Any: ...  # a torch.dtype

    @property
    def max_length(self) -> int: ...

    @property
    def min_length(self) -> int: ...

    @property
    def num_labels(self) -> int | None: ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def architectures(self) -> tuple[str, ...]: ...

    def score_pairs(
        self, call: ScoreCall, *, progress: Callable[[int], None] | None = None
    ) -> list[ScoreResult]: ...

    def weights_bytes(self) -> int: ...

    def cache_info(self) -> CacheInfo | None: ...

    def clear_cache(self) -> None: ...


@runtime_checkable
class EmbeddingBackend(Backend, Protocol):
    """A backend with one vector per text (the bi-encoder)."""

    def embed_texts(self, texts: list[str]) -> tuple[Any, list[bool]]: ...
