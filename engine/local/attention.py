"""Attention over packed sequences: each sequence attends to itself only, nothing is padded.

Inputs are packed 2-D matrices (``q`` [Tq, Hq·d], ``k``/``v`` [Tk, Hkv·d], possibly column
slices of one fused qkv matrix) and per-sequence row spans. Two kernels:

- ``per_sequence`` (CPU, and the fallback anywhere): one ``scaled_dot_product_attention`` call
  per sequence on strided 4-D views. A sequence's result depends on that sequence alone (no
  mask, no padded width), so it is batch invariant; torch's fused CPU kernel takes the views as
  they are (a 3-D or copied input would fall back to its unfused path, several times slower).
- ``varlen`` (CUDA, half precision): torch's flash-attention ``varlen_attn`` over the whole
  packed batch in one launch, with cumulative sequence offsets (no padding on GPU either).

Which dtype the CPU kernel runs in is :func:`cpu_attention_dtype`'s decision (see there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from .devices import cpu_flags

__all__ = ["AttentionShape", "attend", "cpu_attention_dtype"]

logger = logging.getLogger("engine")

Span = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class AttentionShape:
    """Heads of one model: ``heads`` query heads, ``kv_heads`` key/value heads (GQA when fewer)
    of ``head_dim`` each, softmax scale, causal or not."""

    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    causal: bool = False


def cpu_attention_dtype(model_dtype: torch.dtype, flags: frozenset[str] | None = None
                        ) -> torch.dtype:
    """The dtype attention runs in on this CPU for a model loaded in ``model_dtype``.

    float32 models attend in float32 (exact mode). Half-precision models attend in bfloat16 on
    CPUs with AMX: torch's flash kernel runs its bfloat16 blocks through AMX there, measured
    1.1-1.7x its float32 speed on 32-wide heads (bench/README.md). Without AMX (e.g. Zen 4's
    AVX512-BF16) the same kernel was slower in bfloat16 than in float32, so they attend in
    float32, which also keeps the softmax in full precision.
    """
    if model_dtype not in (torch.bfloat16, torch.float16):
        return model_dtype
    have = cpu_flags() if flags is None else flags
    return torch.bfloat16 if "amx_bf16" in have else torch.float32


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_spans: list[Span], kv_spans: list[Span],
    shape: AttentionShape, *, work: torch.dtype, out_rows: int | None = None,
) -> torch.Tensor:
    """Softmax attention per sequence: context [out_rows or Tq, Hq·d] in ``q``'s dtype.

    Query rows of sequence i are ``q[q_spans[i]]``, its keys and values ``k/v[kv_spans[i]]``;
    rows past the last span (filler) are zeros. With ``shape.causal`` and equal spans, token j
    sees tokens 0..j of its sequence.
    """
    rows = q.shape[0] if out_rows is None else out_rows
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        try:
            return _varlen(q, k, v, q_spans, kv_spans, shape, rows)
        except (RuntimeError, NotImplementedError, ImportError, AttributeError) as exc:
            logger.debug("varlen attention unavailable (%s); attending per sequence.", exc)
    return _per_sequence(q, k, v, q_spans, kv_spans, shape, work, rows)


def _per_sequence(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_spans: list[Span],
    kv_spans: list[Span], shape: AttentionShape, work: torch.dtype, rows: int,
) -> torch.Tensor:
    nh, nkv, hd = shape.heads, shape.kv_heads, shape.head_dim
    ctx = q.new_empty((rows, nh * hd))  # [rows, Hq·d]
    ctx[q_spans[-1][1] :].zero_()  # filler rows: zeros, not garbage
    gqa = nkv != nh
    for (qa, qb), (ka, kb) in zip(q_spans, kv_spans, strict=True):
        # The dtype change copies one sequence at a time (nothing when dtypes agree).
        qs = q[qa:qb].to(work).view(1, qb - qa, nh, hd).transpose(1, 2)  # [1, Hq, Lq, d]
        ks = k[ka:kb].to(work).view(1, kb - ka, nkv, hd).transpose(1, 2)  # [1, Hkv, Lk, d]
        vs = v[ka:kb].to(work).view(1, kb - ka, nkv, hd).transpose(1, 2)  # [1, Hkv, Lk, d]
        # Causal only where queries are the keys' own rows; a lone last-token query sees all.
        causal = shape.causal and qb - qa == kb - ka and qb - qa > 1
        out = F.scaled_dot_product_attention(
            qs, ks, vs, scale=shape.scale, is_causal=causal, enable_gqa=gqa
        )  # [1, Hq, Lq, d]
        ctx[qa:qb].view(1, qb - qa, nh, hd).copy_(out.transpose(1, 2))
    return ctx


def _varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_spans: list[Span],
    kv_spans: list[Span], shape: AttentionShape, rows: int,
) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    nh, nkv, hd = shape.heads, shape.kv_heads, shape.head_dim
    q_idx = torch.cat([torch.arange(a, b) for a, b in q_spans]).to(q.device)  # [Tq']
    k_idx = torch.cat([torch.arange(a, b) for a, b in kv_spans]).to(q.device)  # [Tk']

    def offsets(spans: list[Span]) -> torch.Tensor:
        lens = torch.tensor([0] + [b - a for a, b in spans])
        return torch.cumsum(lens, 0).to(device=q.device, dtype=torch.int32)  # [B + 1]

    qs = q.index_select(0, q_idx).view(-1, nh, hd)  # [Tq', Hq, d]
    ks = k.index_select(0, k_idx).view(-1, nkv, hd)  # [Tk', Hkv, d]
    vs = v.index_select(0, k_idx).view(-1, nkv, hd)
    single_query = all(b - a == 1 for a, b in q_spans)
    window = (-1, 0) if shape.causal and not single_query else (-1, -1)
    out = varlen_attn(
        qs, ks, vs, offsets(q_spans), offsets(kv_spans),
        max(b - a for a, b in q_spans), max(b - a for a, b in kv_spans),
        scale=shape.scale, window_size=window, enable_gqa=nkv != nh,
    )  # [Tq', Hq, d]
    assert isinstance(out, torch.Tensor)  # no return_aux asked for
    ctx = q.new_zeros((rows, nh * hd))
    ctx.index_copy_(0, q_idx, out.reshape(-1, nh * hd))
    return ctx
