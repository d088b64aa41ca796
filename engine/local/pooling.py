"""Sequence pooling over token states with an attention mask (sentence-transformers' modes)."""

from __future__ import annotations

import torch

__all__ = ["POOLING_MODES", "pool"]

POOLING_MODES = ("cls", "mean", "max", "lasttoken", "mean_sqrt_len_tokens")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` [B, L, H] with ``mask`` [B, L] (1 = real token) into [B, H].

    Padding is excluded everywhere; special tokens are included (as in vLLM and ST).
    ``lasttoken`` reads the last real token whichever side the padding is on.
    """
    if mode == "cls":
        return hidden[:, 0]  # [B, H]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    if mode in ("mean", "mean_sqrt_len_tokens"):
        summed = (hidden * m).sum(dim=1)  # [B, H]
        counts = m.sum(dim=1).clamp(min=1e-9)  # [B, 1]
        return summed / (counts if mode == "mean" else counts.sqrt())
    if mode == "max":
        filled = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min)  # [B, L, H]
        return filled.max(dim=1).values  # [B, H]
    if mode == "lasttoken":
        # Position of the last 1 in each row: works for left and right padding.
        positions = torch.arange(mask.shape[1], device=mask.device)  # [L]
        last = (mask * positions).argmax(dim=1)  # [B]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [B, H]
    raise ValueError(f"Unknown pooling mode {mode!r}; options are {POOLING_MODES}.")
