"""Similarity maths: cosine for bi-encoders, MaxSim for late interaction. Pure tensor functions."""

from __future__ import annotations

import torch

__all__ = ["cosine", "maxsim", "normalize_tokens"]


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
    sim = torch.einsum("bqd,bkd->bqk", q.float(), d.float())  # [B, Lq, Ld]
    sim = sim.masked_fill(d_mask[:, None, :] == 0, float("-inf"))  # [B, Lq, Ld]
    best = sim.max(dim=-1).values  # [B, Lq]
    best = best.masked_fill(q_mask == 0, 0.0)  # [B, Lq]
    return best.sum(dim=-1)  # [B]
