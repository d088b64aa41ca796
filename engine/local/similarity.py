"""Similarity maths: cosine for bi-encoders, MaxSim for late interaction. Pure tensor functions."""

from __future__ import annotations

import torch

__all__ = ["cosine", "maxsim", "maxsim_one", "normalize_tokens"]


def cosine(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``queries`` [N, D] and ``documents`` [N, D] in float32 → [N].

    Same as ``torch.nn.functional.cosine_similarity(q.float(), d.float(), dim=-1)`` (vLLM's).
    """
    return torch.nn.functional.cosine_similarity(queries.float(), documents.float(), dim=-1)


def normalize_tokens(vectors: torch.Tensor) -> torch.Tensor:
    """L2-normalise each token vector (last dim), as vLLM's per-token ``PoolerNormalize``."""
    return torch.nn.functional.normalize(vectors.float(), p=2, dim=-1)


def maxsim(
    q: torch.Tensor, d: torch.Tensor, q_mask: torch.Tensor, d_mask: torch.Tensor
) -> torch.Tensor:
    """Batched MaxSim: for each pair b, Σ_i over query tokens of max_j over document tokens q_i·d_j.

    Args:
        q: query token vectors [B, Lq, D]; d: document token vectors [B, Ld, D].
        q_mask: [B, Lq], 1 for real query tokens; d_mask: [B, Ld], 1 for real document tokens.

    Returns:
        [B] float32 scores. No length normalisation and no temperature (vLLM's definition); padded
        query rows add nothing and padded document columns are never the max.
    """
    # One product per pair over its own scoring tokens: a batched product over a padded width
    # would give a pair other bits in other company (the kernel and its summation order follow
    # the shapes), and selecting rows is what the masks mean (padding and skipped tokens are
    # never the max, masked query rows add nothing).
    out = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)  # [B]
    for b in range(q.shape[0]):
        qs = q[b][q_mask[b] != 0].float()  # [Lq', D]
        ds = d[b][d_mask[b] != 0].float()  # [Ld', D]
        out[b] = maxsim_one(qs, ds)
    return out


def maxsim_one(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """MaxSim of one pair of token matrices q [Lq, D], d [Ld, D] (every row counts) → [].

    No query token: 0. No document token: -inf (nothing to match), as the masked batch form.
    """
    if q.shape[0] == 0:
        return torch.zeros((), dtype=torch.float32, device=q.device)
    if d.shape[0] == 0:
        return torch.full((), float("-inf"), dtype=torch.float32, device=q.device)
    sim = q @ d.T  # [Lq, Ld]
    return sim.max(dim=1).values.sum()  # []
