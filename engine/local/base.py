"""What every local backend shares: tokenizing with explicit truncation, and the batch loop.

A backend has three stages (prepare → forward → finalize): ``prepare`` tokenizes on the CPU,
``forward`` is the only code that touches the device (under ``torch.inference_mode``), and
``finalize`` turns tensors into Python floats.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..config import ScorerConfig
from ..errors import InputTooLongError
from ..types import ScoreResult, ScoreType
from .loading import CheckpointInfo

ProgressFn = Callable[[int], None]


@dataclass(frozen=True, kw_only=True)
class Tokenized:
    """Token ids of several inputs, unpadded, with which ones were cut."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: list[bool]


def _encode(tokenizer: Any, first: list[str], second: list[str] | None, **kwargs: Any) -> Any:
    # verbose=False: we report over-long inputs ourselves, per result.
    return tokenizer(
        first, second, add_special_tokens=True, padding=False, verbose=False, **kwargs
    )


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    pairs_with: Sequence[str] | None = None,
    *,
    limit: int,
    strategy: str,
    overflow: str,
    what: str = "input",
    positions: Sequence[int] | None = None,
) -> Tokenized:
    """Tokenize texts (or text pairs) and fit each to ``limit`` tokens without hiding it.

    Inputs over the limit are re-tokenized with ``strategy`` ("only_second" cuts the document of a
    pair; "longest_first" is HF's default and vLLM's for truncate_prompt_tokens; "right" for single
    texts). With ``overflow="error"`` an over-long input raises instead, naming its index (its
    entry in ``positions`` when the texts are a subset of the caller's input).
    """
    first = list(texts)
    second = list(pairs_with) if pairs_with is not None else None
    enc = _encode(tokenizer, first, second)
    ids: list[list[int]] = enc["input_ids"]
    types: list[list[int]] | None = enc.get("token_type_ids")
    over = [i for i, seq in enumerate(ids) if len(seq) > limit]
    truncated = [False] * len(ids)
    if not over:
        return Tokenized(input_ids=ids, token_type_ids=types, truncated=truncated)
    if overflow == "error":
        i = over[0]
        shown = positions[i] if positions is not None else i
        raise InputTooLongError(
            f"{what} {shown} is {len(ids[i])} tokens, over the limit of {limit} "
            f"({len(over)} of {len(ids)} inputs are too long). Shorten it, or load with "
            "overflow='truncate' (or pass truncate_prompt_tokens) to cut it and flag the result."
        )
    sub_first = [first[i] for i in over]
    sub_second = [second[i] for i in over] if second is not None else None
    if second is None:
        cut = _encode(tokenizer, sub_first, None, truncation=True, max_length=limit)
    else:
        try:
            cut = _encode(tokenizer, sub_first, sub_second, truncation=strategy, max_length=limit)
        except Exception:
            # "only_second" can't help when the query alone is over the limit: cut both sides.
            cut = _encode(
                tokenizer, sub_first, sub_second, truncation="longest_first", max_length=limit
            )
    for j, i in enumerate(over):
        ids[i] = cut["input_ids"][j]
        if types is not None:
            types[i] = cut["token_type_ids"][j]
        truncated[i] = True
    return Tokenized(input_ids=ids, token_type_ids=types, truncated=truncated)


def distinct(texts: list[str], index: list[int]) -> tuple[list[str], list[int], list[int]]:
    """Each distinct text once, ``index`` remapped onto them, and where each first appears.

    So identical queries of an N:N call are encoded once, like the query of a 1:N call.
    """
    slot: dict[str, int] = {}
    first: list[int] = []
    remap = []
    for i, text in enumerate(texts):
        if text not in slot:
            slot[text] = len(slot)
            first.append(i)
        remap.append(slot[text])
    return list(slot), [remap[i] for i in index], first


class LocalBackend(ABC):
    """One loaded model that scores pairs. Subclasses plug in the encoder and the head."""

    score_type: ClassVar[ScoreType]

    def __init__(
        self, *, info: CheckpointInfo, config: ScorerConfig, device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.info = info
        self.config = config
        self.device = device
        self.dtype = dtype

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Longest model input in tokens (after the user's max_length cap)."""

    @abstractmethod
    def score_pairs(
        self,
        queries: list[str],
        documents: list[str],
        query_index: list[int],
        *,
        use_activation: bool,
        truncate_prompt_tokens: int | None,
        progress: ProgressFn | None = None,
    ) -> list[ScoreResult]:
        """Score pair k = (queries[query_index[k]], documents[k]); results in pair order."""


def cap_max_length(limits: tuple[int, int], user_limit: int | None) -> int:
    """The model's default limit, or the user's max_length if it fits the position table."""
    default, hard = limits
    if user_limit is None:
        return default
    if user_limit > hard:
        from ..errors import InputError

        raise InputError(
            f"max_length={user_limit} is more than this model can read ({hard} positions)."
        )
    return user_limit
