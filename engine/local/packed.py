"""A padding-free forward for BERT-family encoders on CPU (BERT, RoBERTa, XLM-R, CamemBERT).

Why it exists: on a CPU the stock padded forward spends work on pad tokens (about a quarter of
it for 100 realistic query-passage pairs), adds each linear layer's bias with a separate copy,
runs GELU and the residual add as passes of their own, and, in a cross-encoder, computes every
token of the last layer although only [CLS] is read. This forward

- packs the tokens of a batch into one [T, H] matrix for every linear layer (no pad tokens),
- runs attention one sequence at a time (no mask, nothing padded),
- fuses bias + GELU and bias + residual into the linear kernels (oneDNN) where torch has them,
- for a cross-encoder, runs the last layer's attention output and feed-forward on [CLS] rows only.

It is the same computation as the stock forward, in the model's own dtype: float32 results agree
with it to about 1e-6 (summation order differs), which tests/test_performance_paths.py checks.
Anything it does not recognise (another architecture, relative positions, a decoder, a GPU)
makes :func:`build_packed_encoder` return None and the caller keeps the stock forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = [
    "PACKED_MIN_TOKENS", "PackedBatch", "PackedEncoder", "build_packed_classifier",
    "build_packed_encoder", "classification_head", "pack", "unpack", "use_packed",
]

logger = logging.getLogger("engine")

# Encoders whose layer layout this module reproduces: embeddings (word + token type + absolute
# position, LayerNorm), then post-LayerNorm blocks of self-attention and a GELU feed-forward.
_SUPPORTED_ENCODERS = {"BertModel", "RobertaModel", "XLMRobertaModel", "CamembertModel"}
# Position ids counted from padding_idx + 1 (fairseq), not from 0.
_FAIRSEQ_POSITIONS = {"RobertaModel", "XLMRobertaModel", "CamembertModel"}
# hidden_act → the oneDNN post-op name and algorithm (erf GELU is HF's "gelu").
_ACTIVATIONS = {
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}
_TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


# Calls with fewer real tokens than this keep the stock padded forward. Below it padding costs
# little in absolute time, and the stock forward is what sentence-transformers runs, so small
# calls match it bit for bit; the packed forward sums in another order (float32 results differ
# by about 1e-6 on real models, up to ~1e-5 on the tiny ill-conditioned test models).
PACKED_MIN_TOKENS = 1024
# Linear layers see their row count rounded up to a multiple of this (see PackedEncoder._forward).
ROW_BUCKET = 512


def use_packed(encoder: object | None, lengths: Sequence[int]) -> bool:
    """Whether a call with these sequence lengths takes the packed forward."""
    return (
        encoder is not None and bool(lengths) and min(lengths) > 0
        and sum(lengths) >= PACKED_MIN_TOKENS
    )


@dataclass(frozen=True, kw_only=True)
class PackedBatch:
    """Sequences laid end to end: ``ids`` [T], ``type_ids`` [T] or None, per-sequence lengths."""

    ids: torch.Tensor
    type_ids: torch.Tensor | None
    lengths: tuple[int, ...]

    @property
    def starts(self) -> list[int]:
        out, at = [], 0
        for n in self.lengths:
            out.append(at)
            at += n
        return out


def pack(
    ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None = None
) -> PackedBatch:
    """Concatenate id lists (and their token type ids) into one flat batch. Empty lists refused."""
    lengths = tuple(len(s) for s in ids)
    if not lengths or min(lengths) < 1:
        raise ValueError("pack() needs at least one sequence and no empty sequence.")
    flat = torch.tensor([t for seq in ids for t in seq], dtype=torch.long)  # [T]
    types = None
    if type_ids is not None:
        types = torch.tensor([t for seq in type_ids for t in seq], dtype=torch.long)  # [T]
    return PackedBatch(ids=flat, type_ids=types, lengths=lengths)


def unpack(hidden: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed states [T, H] → right-padded [B, L, H] (zeros in padding) and mask [B, L] (int64)."""
    batch, width = len(lengths), max(lengths)
    lens = torch.as_tensor(list(lengths), device=hidden.device)  # [B]
    mask = (torch.arange(width, device=hidden.device)[None, :] < lens[:, None]).long()  # [B, L]
    out = hidden.new_zeros((batch, width, hidden.shape[-1]))  # [B, L, H]
    out[mask.bool()] = hidden  # row-major order of the mask is the packed order
    return out, mask


def _positions(batch: PackedBatch, *, fairseq_pad: int | None) -> torch.Tensor:
    """Position ids [T]: 0..n-1 per sequence, or fairseq's padding_idx + 1 + count of non-pads."""
    lens = torch.as_tensor(batch.lengths)  # [B]
    starts = torch.cumsum(lens, 0) - lens  # [B]
    if fairseq_pad is None:
        return torch.arange(batch.ids.numel()) - torch.repeat_interleave(starts, lens)  # [T]
    # RoBERTa: cumsum of (id != pad) within each sequence, times (id != pad), plus pad.
    real = batch.ids.ne(fairseq_pad).long()  # [T]
    total = torch.cumsum(real, 0)  # [T]
    before = torch.repeat_interleave(total[starts] - real[starts], lens)  # [T]
    return (total - before) * real + fairseq_pad


@dataclass(frozen=True, kw_only=True)
class _Layer:
    """One encoder block's weights; qkv is query, key and value stacked ([3H, H])."""

    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    ln1: tuple[torch.Tensor, torch.Tensor, float]
    ff_in_w: torch.Tensor
    ff_in_b: torch.Tensor
    ff_out_w: torch.Tensor
    ff_out_b: torch.Tensor
    ln2: tuple[torch.Tensor, torch.Tensor, float]


def _onednn_works(dtype: torch.dtype) -> bool:
    """Whether torch's fused oneDNN linear kernels run here (x86/ARM builds with mkldnn)."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    try:
        x = torch.ones((2, 4), dtype=dtype)
        w = torch.ones((3, 4), dtype=dtype)
        b = torch.zeros(3, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
        z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, b, "add")
        return bool(torch.isfinite(z).all())
    except (RuntimeError, AttributeError):
        return False


class PackedEncoder:
    """The padding-free forward of one loaded BERT-family encoder (shares its weights).

    Call it with a :class:`PackedBatch`; it returns the last hidden states [T, H] in packed
    order, or with ``cls_only=True`` only each sequence's first-token state [B, H].
    """

    def __init__(self, encoder: Any, *, activation: str) -> None:
        config = encoder.config
        emb = encoder.embeddings
        self.word = emb.word_embeddings.weight  # [V, H]
        self.position = emb.position_embeddings.weight  # [P, H]
        self.token_type = emb.token_type_embeddings.weight  # [2, H] (BERT) or [1, H]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias, float(emb.LayerNorm.eps))
        self.fairseq_pad = (
            int(emb.padding_idx) if type(encoder).__name__ in _FAIRSEQ_POSITIONS else None
        )
        self.heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.head_dim = self.hidden // self.heads
        self.scale = self.head_dim**-0.5  # what HF's attention uses
        self.dtype = self.word.dtype
        self.post_op, self.post_algo = _ACTIVATIONS[activation]
        self.act = _TORCH_ACTIVATIONS[activation]
        self.fused = _onednn_works(self.dtype)
        self.layers = [self._layer(block) for block in encoder.encoder.layer]

    def _layer(self, block: Any) -> _Layer:
        att = block.attention
        qkv_w = torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight])
        qkv_b = torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias])
        # The stock modules now read views into the stacked tensors, so the weights exist once.
        h = self.hidden
        for i, lin in enumerate((att.self.query, att.self.key, att.self.value)):
            lin.weight = torch.nn.Parameter(qkv_w[i * h : (i + 1) * h], requires_grad=False)
            lin.bias = torch.nn.Parameter(qkv_b[i * h : (i + 1) * h], requires_grad=False)
        ln1, ln2 = att.output.LayerNorm, block.output.LayerNorm
        return _Layer(
            qkv_w=qkv_w, qkv_b=qkv_b,
            out_w=att.output.dense.weight, out_b=att.output.dense.bias,
            ln1=(ln1.weight, ln1.bias, float(ln1.eps)),
            ff_in_w=block.intermediate.dense.weight, ff_in_b=block.intermediate.dense.bias,
            ff_out_w=block.output.dense.weight, ff_out_b=block.output.dense.bias,
            ln2=(ln2.weight, ln2.bias, float(ln2.eps)),
        )

    # -- kernels ---------------------------------------------------------------------------------
    def _linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")  # type: ignore[no-any-return]
        return F.linear(x, w, b)

    def _linear_act(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """act(x @ w.T + b) in one kernel where oneDNN can."""
        if self.fused:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, self.post_op, [], self.post_algo)  # type: ignore[no-any-return]
        return self.act(F.linear(x, w, b))

    def _linear_add(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """x @ w.T + b + residual in one kernel where oneDNN can."""
        if self.fused:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, w, b, "add")  # type: ignore[no-any-return]
        return F.linear(x, w, b) + residual

    def _attend(
        self, q: torch.Tensor, kv: torch.Tensor, q_spans: list[tuple[int, int]],
        kv_spans: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Per-sequence softmax attention. q [Tq, H], kv [Tk, 2H] packed → context [Tq, H].

        Half-precision models attend in float32: with 32-wide heads the bfloat16 CPU kernel is
        slower than the float32 one (measured on AVX512-BF16), and float32 keeps the softmax
        exact.
        """
        nh, hd = self.heads, self.head_dim
        work = torch.float32 if q.element_size() < 4 else q.dtype  # half precision → float32
        ctx = torch.empty_like(q)  # [Tq, H], the model's dtype
        ctx[q_spans[-1][1] :].zero_()  # filler rows (see _forward): zeros, not garbage
        for (qa, qb), (ka, kb) in zip(q_spans, kv_spans, strict=True):
            # 4-D strided views: torch's fused CPU attention kernel takes them as they are (a 3-D
            # input would fall back to the unfused path, several times slower). The dtype change
            # copies one sequence at a time (nothing for a float32 model), not the whole batch.
            qs = q[qa:qb].to(work).view(1, qb - qa, nh, hd).transpose(1, 2)  # [1, nh, Lq, hd]
            kvs = kv[ka:kb].to(work).view(1, kb - ka, 2, nh, hd)  # [1, Lk, 2, nh, hd]
            k = kvs[:, :, 0].transpose(1, 2)  # [1, nh, Lk, hd]
            v = kvs[:, :, 1].transpose(1, 2)  # [1, nh, Lk, hd]
            out = F.scaled_dot_product_attention(qs, k, v, scale=self.scale)  # [1, nh, Lq, hd]
            ctx[qa:qb].view(1, qb - qa, nh, hd).copy_(out.transpose(1, 2))
        return ctx

    # -- forward ---------------------------------------------------------------------------------
    def embed(self, batch: PackedBatch, rows: int) -> torch.Tensor:
        """Embedding output [rows, H]: word + token type + position, then LayerNorm (HF's order).

        Rows past the batch's T tokens are filler (token, type and position 0).
        """
        ids = batch.ids
        types = batch.type_ids if batch.type_ids is not None else torch.zeros_like(ids)
        positions = _positions(batch, fairseq_pad=self.fairseq_pad)  # [T]
        extra = rows - ids.numel()
        if extra:
            ids, types, positions = (F.pad(t, (0, extra)) for t in (ids, types, positions))
        x = F.embedding(ids, self.word) + F.embedding(types, self.token_type)  # [rows, H]
        x = x + F.embedding(positions, self.position)
        w, b, eps = self.emb_ln
        return F.layer_norm(x, (self.hidden,), w, b, eps)

    def __call__(self, batch: PackedBatch, *, cls_only: bool = False) -> torch.Tensor:
        with torch.inference_mode():
            return self._forward(batch, cls_only=cls_only)

    def _forward(self, batch: PackedBatch, *, cls_only: bool) -> torch.Tensor:
        h = self.hidden
        spans = [(a, a + n) for a, n in zip(batch.starts, batch.lengths, strict=True)]
        total = sum(batch.lengths)
        # Row count rounded up to a multiple of ROW_BUCKET: oneDNN builds (and caches, ~0.5 MB
        # each) a kernel per distinct matrix shape, so free row counts grow memory batch after
        # batch (+100 MB over 40 batches measured); a few buckets keep it bounded. The filler
        # rows cost ~2% more work and never enter attention, so real rows are unaffected.
        rows = -(-total // ROW_BUCKET) * ROW_BUCKET
        x = self.embed(batch, rows)  # [rows, H]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if cls_only and i == last:
                # Only [CLS] is read: keys/values need every token, everything else one row each.
                first = torch.as_tensor([a for a, _ in spans])  # [B]
                kv = self._linear(x, layer.qkv_w[h:], layer.qkv_b[h:])  # [rows, 2H]
                x = x.index_select(0, first)  # [B, H]
                # [CLS] rows rounded up to a multiple of 8, for the same reason as above.
                x = F.pad(x, (0, 0, 0, -len(spans) % 8))  # [B8, H]
                q = self._linear(x, layer.qkv_w[:h], layer.qkv_b[:h])  # [B8, H]
                q_spans = [(j, j + 1) for j in range(len(spans))]
                ctx = self._attend(q, kv, q_spans, spans)  # [B8, H]
            else:
                qkv = self._linear(x, layer.qkv_w, layer.qkv_b)  # [rows, 3H]
                ctx = self._attend(qkv[:, :h], qkv[:, h:], spans, spans)  # [rows, H]
            w, b, eps = layer.ln1
            x = F.layer_norm(
                self._linear_add(ctx, layer.out_w, layer.out_b, x), (h,), w, b, eps
            )  # [rows, H]
            inner = self._linear_act(x, layer.ff_in_w, layer.ff_in_b)  # [rows, I]
            w, b, eps = layer.ln2
            x = F.layer_norm(
                self._linear_add(inner, layer.ff_out_w, layer.ff_out_b, x), (h,), w, b, eps
            )  # [rows, H]
        return x[: len(spans)] if cls_only else x[:total]


def build_packed_encoder(encoder: Any, device: torch.device) -> PackedEncoder | None:
    """A :class:`PackedEncoder` for ``encoder`` (an HF base model), or None to keep the stock one.

    None for anything but a CPU BERT-family encoder with absolute positions, no decoder or
    cross-attention, and an activation this module knows.
    """
    if device.type != "cpu" or type(encoder).__name__ not in _SUPPORTED_ENCODERS:
        return None
    config = encoder.config
    activation = getattr(config, "hidden_act", None)
    if (
        getattr(config, "position_embedding_type", "absolute") not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or getattr(config, "add_cross_attention", False)
        or not isinstance(activation, str)
        or activation not in _ACTIVATIONS
        or config.hidden_size % config.num_attention_heads
    ):
        return None
    try:
        return PackedEncoder(encoder, activation=activation)
    except AttributeError as exc:
        # A subclass that renamed a submodule: the stock forward still works, just slower.
        logger.debug("Packed forward not available for %s: %s", type(encoder).__name__, exc)
        return None


def classification_head(model: Any) -> Any:
    """The head of a ``*ForSequenceClassification`` as a function of [CLS] states [B, H] → logits.

    None where the head reads more than the first token or the class is not one we know; the
    stock HF modules do the work, so the head's maths is exactly the checkpoint's.
    """
    name = type(model).__name__
    if name == "BertForSequenceClassification" and getattr(model.bert, "pooler", None) is not None:

        def bert_head(cls: torch.Tensor) -> torch.Tensor:
            pooled = model.bert.pooler(cls[:, None, :])  # reads [:, 0]: dense + tanh → [B, H]
            return model.classifier(model.dropout(pooled))  # type: ignore[no-any-return]

        return bert_head
    if name in {
        "RobertaForSequenceClassification", "XLMRobertaForSequenceClassification",
        "CamembertForSequenceClassification",
    }:

        def roberta_head(cls: torch.Tensor) -> torch.Tensor:
            return model.classifier(cls[:, None, :])  # type: ignore[no-any-return]

        return roberta_head
    return None


def build_packed_classifier(model: Any, device: torch.device) -> Any:
    """(PackedEncoder, head) for a supported ``*ForSequenceClassification``, or None."""
    head = classification_head(model)
    base = getattr(model, "base_model", None)
    if head is None or base is None:
        return None
    encoder = build_packed_encoder(base, device)
    return None if encoder is None else (encoder, head)
