"""Sequence pooling over token states with an attention mask: one place for every backend.

The modes are sentence-transformers' (bi-encoders) plus what LLM rerankers read: the last real
token of a decoder, the mean for nvidia's bidirectional Llama, the first token.
"""

from __future__ import annotations

import torch

__all__ = ["POOLING_MODES", "last_token_index", "pool", "pool_packed"]

POOLING_MODES = ("cls", "mean", "max", "lasttoken", "mean_sqrt_len_tokens")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token [B] from ``mask`` [B, L] (either padding side)."""
    positions = torch.arange(mask.shape[1], device=mask.device)  # [L]
    return (mask.long() * positions).argmax(dim=1)  # [B]


def first_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's first real token [B] from ``mask`` [B, L] (either padding side)."""
    countdown = torch.arange(mask.shape[1], 0, -1, device=mask.device)  # [L]: L .. 1
    return (mask.long() * countdown).argmax(dim=1)  # [B]


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` [B, L, H] with ``mask`` [B, L] (1 = real token) into [B, H].

    Padding is excluded everywhere; special tokens are included (as in vLLM and ST). ``cls``
    and ``lasttoken`` read the first / last real token whichever side the padding is on.
    """
    rows = torch.arange(hidden.shape[0], device=hidden.device)  # [B]
    if mode == "cls":
        return hidden[rows, first_token_index(mask)]  # [B, H]
    if mode == "lasttoken":
        return hidden[rows, last_token_index(mask)]  # [B, H]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    if mode in ("mean", "mean_sqrt_len_tokens"):
        summed = (hidden * m).sum(dim=1)  # [B, H]
        counts = m.sum(dim=1).clamp(min=1e-9)  # [B, 1]
        return summed / (counts if mode == "mean" else counts.sqrt())
    if mode == "max":
        filled = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min)  # [B, L, H]
        return filled.max(dim=1).values  # [B, H]
    raise ValueError(f"Unknown pooling mode {mode!r}; options are {POOLING_MODES}.")


def pool_packed(hidden: torch.Tensor, lengths: tuple[int, ...] | list[int], mode: str
                ) -> torch.Tensor:
    """Pool packed states ``hidden`` [T, H] (sequence i in rows ``sum(lengths[:i])`` onward)
    into [B, H].

    Each sequence is reduced over its own rows only, never over a padded width, so its result
    is the same in any batch (a masked sum over a wider padded row can change the summation
    order). Same modes and definitions as :func:`pool`.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"Unknown pooling mode {mode!r}; options are {POOLING_MODES}.")
    out = []
    at = 0
    for n in lengths:
        rows = hidden[at : at + n]  # [n, H]
        at += n
        if mode == "cls":
            out.append(rows[0])
        elif mode == "lasttoken":
            out.append(rows[n - 1])
        elif mode == "max":
            out.append(rows.max(dim=0).values)
        else:
            total = rows.sum(dim=0)  # [H]
            count = torch.tensor(float(max(n, 1)), dtype=rows.dtype, device=rows.device)
            out.append(total / (count if mode == "mean" else count.sqrt()))
    return torch.stack(out)  # [B, H]
