"""A padding-free forward for the decoder stacks of LLM rerankers (Llama, Qwen2, Qwen3, Gemma).

The stock forward pads a batch to its longest prompt and masks; this one packs the prompts into
one [T, H] matrix for every linear layer and attends per sequence (causal, or bidirectional for
nvidia's nemotron rerankers), the way :mod:`engine.local.packed` does for BERT encoders:

- RMSNorm, rotary embeddings and the embedding lookup are the checkpoint's own HF modules
  (row-wise maths, so Gemma's ``1 + w`` norm and scaled embedding, Qwen3's per-head q/k norms
  and every RoPE scaling that does not depend on the batch's length come for free);
- q, k and v are one fused linear layer, SwiGLU/GeGLU is two (``act(x·Wg)`` then
  ``(x·Wu) * gate``, fused in oneDNN), down projection + residual one;
- attention per sequence with grouped-query heads (:mod:`engine.local.attention`);
- when only the last (or first) token is pooled, the last layer runs attention output and MLP
  for that row only; its keys and values still cover every token.

A sequence's result depends on that sequence alone, so scores are batch invariant. Anything
else (sliding-window layers, length-dependent RoPE, Gemma 2/3's soft-capping and extra norms)
makes :func:`build_packed_decoder` return None and the backend keeps the stock forward.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from .attention import AttentionShape, attend, cpu_attention_dtype
from .kernels import ACTIVATIONS, Linears, bucket_rows

__all__ = ["PackedDecoder", "RMSNorm", "apply_rotary", "build_packed_decoder", "rotate_half"]

logger = logging.getLogger("engine")

_SUPPORTED = {"LlamaModel", "Qwen2Model", "Qwen3Model", "GemmaModel"}
# RoPE types whose frequencies depend on positions only (not on the batch's longest sequence).
_STATIC_ROPE = {"default", "linear", "llama3", "yarn"}


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., d] → [..., d] with halves (a, b) → (-b, a): HF's rotary convention."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x [T, heads, d] with cos/sin [T, d] (HF's ``apply_rotary_pos_emb``)."""
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]  # [T, heads, d]


# rsqrt runs in blocks of this many elements: below torch's parallel grain (32,768), so one
# thread takes each block whole and no thread boundary falls inside a vector.
_RSQRT_BLOCK = 8192


def rsqrt(v: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(v) elementwise, with the same bits for a value wherever it sits.

    torch.rsqrt's vectorised loop and its scalar tail loop round differently, so on a packed
    matrix a row's result would depend on its position (and on where a thread's share ends).
    Padded to a multiple of 64 elements and run in blocks, every value takes the vectorised
    loop: the bits HF's RMSNorm gets for all but its last few values.
    """
    flat = v.reshape(-1)
    n = flat.numel()
    padded = F.pad(flat, (0, -n % 64), value=1.0)
    parts = [torch.rsqrt(padded[i : i + _RSQRT_BLOCK])
             for i in range(0, padded.numel(), _RSQRT_BLOCK)]
    return torch.cat(parts)[:n].view(v.shape)


@dataclass(frozen=True)
class RMSNorm:
    """An HF RMSNorm's maths (Llama/Qwen: ``w * (x * rsqrt).to(dtype)``; Gemma:
    ``(x * rsqrt * (1 + w)).to(dtype)``, both normalised in float32) over the last dim, with a
    position-independent :func:`rsqrt`."""

    weight: torch.Tensor
    eps: float
    gemma: bool

    @classmethod
    def of(cls, module: Any) -> RMSNorm:
        eps = getattr(module, "variance_epsilon", None)
        eps = getattr(module, "eps") if eps is None else eps  # noqa: B009 (Gemma's name)
        return cls(module.weight, float(eps), "Gemma" in type(module).__name__)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # [..., H]
        if self.gemma:
            return (h * (1.0 + self.weight.float())).type_as(x)
        return self.weight * h.to(x.dtype)


@dataclass(frozen=True, kw_only=True)
class _Block:
    qkv_w: torch.Tensor  # [(Hq + 2 Hkv) d, H]
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor
    o_b: torch.Tensor | None
    q_norm: RMSNorm | None  # Qwen3's per-head norms
    k_norm: RMSNorm | None
    ln_in: RMSNorm
    ln_post: RMSNorm
    gate_w: torch.Tensor
    gate_b: torch.Tensor | None
    up_w: torch.Tensor
    up_b: torch.Tensor | None
    down_w: torch.Tensor
    down_b: torch.Tensor | None


def _stack(linears: Sequence[torch.nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One [ΣN, K] weight (and bias) for several linear layers of one input; the layers then
    read views into it, so the weights exist once."""
    weight = torch.cat([lin.weight for lin in linears])
    has_bias = [lin.bias is not None for lin in linears]
    bias = torch.cat([lin.bias for lin in linears]) if all(has_bias) else None  # type: ignore[misc]
    if any(has_bias) and bias is None:
        raise ValueError("q/k/v projections with and without bias")
    at = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = torch.nn.Parameter(weight[at : at + n], requires_grad=False)
        if bias is not None:
            lin.bias = torch.nn.Parameter(bias[at : at + n], requires_grad=False)
        at += n
    return weight, bias


class PackedDecoder:
    """The padding-free forward of one HF decoder base model (shares its weights)."""

    def __init__(self, model: Any, *, causal: bool, activation: str,
                 device: torch.device | None = None) -> None:
        config = model.config
        self.embed = model.embed_tokens
        self.norm = RMSNorm.of(model.norm)
        self.rotary = model.rotary_emb
        first = model.layers[0].self_attn
        heads = int(config.num_attention_heads)
        self.shape = AttentionShape(
            heads=heads, kv_heads=int(config.num_key_value_heads), head_dim=int(first.head_dim),
            scale=float(first.scaling), causal=causal,
        )
        self.activation = activation
        weight = self.embed.weight
        self.dtype, self.device = weight.dtype, weight.device
        kernels_for = device or self.device  # the device asked for (see PackedEncoder)
        self.linear = Linears(kernels_for, self.dtype)
        self.work = cpu_attention_dtype(self.dtype) if kernels_for.type == "cpu" else self.dtype
        self.blocks = [self._block(layer) for layer in model.layers]

    def _block(self, layer: Any) -> _Block:
        att, mlp = layer.self_attn, layer.mlp
        qkv_w, qkv_b = _stack([att.q_proj, att.k_proj, att.v_proj])
        return _Block(
            qkv_w=qkv_w, qkv_b=qkv_b, o_w=att.o_proj.weight, o_b=att.o_proj.bias,
            q_norm=RMSNorm.of(att.q_norm) if hasattr(att, "q_norm") else None,
            k_norm=RMSNorm.of(att.k_norm) if hasattr(att, "k_norm") else None,
            ln_in=RMSNorm.of(layer.input_layernorm),
            ln_post=RMSNorm.of(layer.post_attention_layernorm),
            gate_w=mlp.gate_proj.weight, gate_b=mlp.gate_proj.bias,
            up_w=mlp.up_proj.weight, up_b=mlp.up_proj.bias,
            down_w=mlp.down_proj.weight, down_b=mlp.down_proj.bias,
        )

    def __call__(self, ids: Sequence[Sequence[int]], *, pooling: str) -> torch.Tensor:
        """Pooled last hidden states [B, H] (float32, or float64 for a float64 model) of id lists.

        ``pooling``: "lasttoken", "cls" (first token) or "mean" over each sequence's tokens.
        """
        with torch.inference_mode():
            return self._forward(ids, pooling)

    def _forward(self, ids: Sequence[Sequence[int]], pooling: str) -> torch.Tensor:
        lengths = [len(s) for s in ids]
        spans, at = [], 0
        for n in lengths:
            spans.append((at, at + n))
            at += n
        total = at
        rows = bucket_rows(total)
        flat = torch.zeros(rows, dtype=torch.long)  # [rows]; filler rows are token 0
        flat[:total] = torch.tensor([t for seq in ids for t in seq], dtype=torch.long)
        positions = torch.zeros(rows, dtype=torch.long)  # [rows]: 0..n-1 per sequence
        positions[:total] = torch.cat([torch.arange(n) for n in lengths])
        flat, positions = flat.to(self.device), positions.to(self.device)
        x = self.embed(flat)  # [rows, H]
        cos, sin = self.rotary(x[None], positions[None])  # [1, rows, d] each
        cos, sin = cos[0], sin[0]  # [rows, d]
        one_row = pooling in ("lasttoken", "cls")
        picks = torch.as_tensor(
            [b - 1 if pooling == "lasttoken" else a for a, b in spans], device=self.device
        )  # [B]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = self._block_forward(block, x, cos, sin, spans,
                                    picks if one_row and i == last else None)
        # Pooled in float32 at least (the stock path's pool(hidden.float())), float64 as is.
        x = self.norm(x).to(torch.promote_types(self.dtype, torch.float32))  # [rows or B, H]
        if one_row:
            return x
        return torch.stack([x[a:b].mean(dim=0) for a, b in spans])  # [B, H]: own rows only

    def _block_forward(
        self, block: _Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
        spans: list[tuple[int, int]], picks: torch.Tensor | None,
    ) -> torch.Tensor:
        """One decoder layer on packed rows x [rows, H]; with ``picks`` [B], only those rows'
        outputs are computed (they attend to every token of their sequence) → [B, H]."""
        lin, shape = self.linear, self.shape
        nq, nkv, d = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.head_dim
        h = block.ln_in(x)  # [rows, H]
        qkv = lin(h, block.qkv_w, block.qkv_b)  # [rows, nq + 2 nkv]
        q = qkv[:, :nq].reshape(-1, shape.heads, d)  # [rows, Hq, d]
        k = qkv[:, nq : nq + nkv].reshape(-1, shape.kv_heads, d)  # [rows, Hkv, d]
        v = qkv[:, nq + nkv :]  # [rows, nkv]
        if picks is not None:
            q, x = q.index_select(0, picks), x.index_select(0, picks)  # [B, Hq, d], [B, H]
            q_cos, q_sin = cos.index_select(0, picks), sin.index_select(0, picks)
            q_spans = [(j, j + 1) for j in range(len(spans))]
            # A picked row sees its sequence up to itself (causal) or all of it.
            kv_spans = spans if not shape.causal else [
                (a, int(p) + 1) for (a, _), p in zip(spans, picks.tolist(), strict=True)
            ]
        else:
            q_cos, q_sin, q_spans, kv_spans = cos, sin, spans, spans
        if block.q_norm is not None and block.k_norm is not None:
            q, k = block.q_norm(q), block.k_norm(k)  # per-head RMSNorm (Qwen3)
        q = apply_rotary(q, q_cos, q_sin).reshape(q.shape[0], nq)  # [rows or B, nq]
        k = apply_rotary(k, cos, sin).reshape(k.shape[0], nkv)  # [rows, nkv]
        ctx = attend(q, k, v, q_spans, kv_spans, shape, work=self.work)  # [rows or B, nq]
        x = lin.add(ctx, block.o_w, block.o_b, x)  # residual + attention
        h = block.ln_post(x)
        gate = lin(h, block.gate_w, block.gate_b, self.activation)  # act(h·Wg)
        up = lin.mul(h, block.up_w, block.up_b, gate)  # (h·Wu) * gate
        return lin.add(up, block.down_w, block.down_b, x)  # residual + MLP


_BUILT: weakref.WeakKeyDictionary[Any, PackedDecoder] = weakref.WeakKeyDictionary()


def build_packed_decoder(model: Any, device: torch.device, *, causal: bool) -> Any:
    """The :class:`PackedDecoder` of an HF decoder base model, or None to keep the stock one.

    Built once per loaded model (backends sharing the weights share it).
    """
    if device.type not in ("cpu", "cuda") or type(model).__name__ not in _SUPPORTED:
        return None
    config = model.config
    activation = getattr(config, "hidden_act", None)
    rope = getattr(config, "rope_parameters", None) or {}
    layer_types = getattr(config, "layer_types", None) or ()
    if (
        not isinstance(activation, str) or activation not in ACTIVATIONS
        or rope.get("rope_type", "default") not in _STATIC_ROPE
        or any(t != "full_attention" for t in layer_types)
        or getattr(config, "use_sliding_window", False)
    ):
        return None
    found = _BUILT.get(model)
    if found is not None and found.shape.causal == causal and found.linear.device == device:
        return found
    try:
        built = PackedDecoder(model, causal=causal, activation=activation, device=device)
    except (AttributeError, ValueError) as exc:
        logger.debug("Packed decoder not available for %s: %s", type(model).__name__, exc)
        return None
    _BUILT[model] = built
    return built
