"""Length-sorted, token-budget batches and padding. Pure functions over token-id lists."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["pad", "plan_batches"]


def plan_batches(
    lengths: Sequence[int], *, max_batch_size: int, max_tokens_per_batch: int,
    padded: bool = True,
) -> list[list[int]]:
    """Group sequence indices into batches, longest first, bounded by count and tokens.

    With ``padded`` (the stock forward), a batch's cost is ``len(batch) * longest_in_batch``
    (what padding makes the model read); without it (the packed forward, which reads no pad
    tokens) it is the sum of the lengths. Either stays within ``max_tokens_per_batch``; a single
    sequence over the budget gets a batch of its own. Sorting by length keeps padding small;
    callers restore their order from the indices.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    total = 0
    for i in order:
        n = max(lengths[i], 1)
        # Sorted descending, so the first item of a batch is its longest.
        width = longest if current else n
        cost = (len(current) + 1) * width if padded else total + n
        if current and (len(current) >= max_batch_size or cost > max_tokens_per_batch):
            batches.append(current)
            current = []
            total = 0
        if not current:
            longest = n
        current.append(i)
        total += n
    if current:
        batches.append(current)
    return batches


def pad(
    sequences: Sequence[Sequence[int]], *, pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into ``input_ids`` [B, L] and ``attention_mask`` [B, L] (int64)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        if side == "right":
            ids[row, :n] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, :n] = 1
        else:
            ids[row, width - n :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - n :] = 1
    return ids, mask


def pad_values(sequences: Sequence[Sequence[int]], *, value: int, side: str = "right") -> torch.Tensor:
    """Pad a companion field (e.g. token_type_ids) the same way as :func:`pad`."""
    ids, _ = pad(sequences, pad_id=value, side=side)
    return ids
