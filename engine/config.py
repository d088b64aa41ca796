"""Load-time configuration: frozen, keyword-only, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import InputError
from .types import ScoreType

__all__ = ["ScorerConfig"]


@dataclass(frozen=True, kw_only=True)
class ScorerConfig:
    """How a local model is loaded and run. Every field has a safe default.

    Attributes:
        score_type: "cross-encoder", "late-interaction", "bi-encoder", or None to detect it from
            the checkpoint's files.
        device: "auto" (cuda, then mps, then cpu) or a torch device string.
        dtype: "auto" (float32 on CPU, bfloat16/float16 on GPU), "float32", "bfloat16", "float16".
        max_length: cap on tokens per model input (pair prompt, or each text); None = the model's.
        batch_size: most sequences per forward pass.
        max_tokens_per_batch: most padded tokens per forward pass (bounds memory).
        overflow: "truncate" fits over-long input (document side first) and flags it;
            "error" raises InputTooLongError instead.
        trust_remote_code: run a checkpoint's own Python code; off unless you trust it.
        revision: hub revision when ``model`` is a hub id in the local cache.
        colbert_markers: late-interaction only; add ColBERT's [Q]/[D] markers and [MASK] query
            augmentation (PyLate / colbert-ir parity) instead of vLLM's plain tokens.
        query_length: with colbert_markers, queries are padded with [MASK] to this many tokens.
    """

    score_type: ScoreType | None = None
    device: str = "auto"
    dtype: Any = "auto"
    max_length: int | None = None
    batch_size: int = 32
    max_tokens_per_batch: int = 8192
    overflow: Literal["truncate", "error"] = "truncate"
    trust_remote_code: bool = False
    revision: str | None = None
    colbert_markers: bool = False
    query_length: int = 32

    def __post_init__(self) -> None:
        if self.score_type is not None:
            object.__setattr__(self, "score_type", ScoreType.parse(self.score_type))
        for name in ("batch_size", "max_tokens_per_batch", "query_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if self.max_length is not None and (
            isinstance(self.max_length, bool) or not isinstance(self.max_length, int)
            or self.max_length < 2
        ):
            raise InputError(f"max_length must be an int ≥ 2 or None, got {self.max_length!r}.")
        if self.overflow not in ("truncate", "error"):
            raise InputError(f"overflow must be 'truncate' or 'error', got {self.overflow!r}.")
