"""A padding-free forward for BERT-family encoders (BERT, RoBERTa, XLM-R, CamemBERT).

Why it exists: the stock padded forward spends work on pad tokens (about a quarter of it for
100 realistic query-passage pairs), adds each linear layer's bias with a separate copy, runs GELU
and the residual add as passes of their own, computes every token of a cross-encoder's last layer
although only [CLS] is read, and gives a sequence other bits in other batch company (masked
reductions over a padded width, BLAS kernels picked by row count). This forward

- packs the tokens of a batch into one [T, H] matrix for every linear layer (no pad tokens),
  through :class:`~engine.local.kernels.Linears` (fused oneDNN on CPU; rows batch invariant),
- runs attention per sequence (:mod:`engine.local.attention`: no mask, nothing padded),
- for a cross-encoder, runs the last layer's attention output and feed-forward on [CLS] rows only,
- for ColBERT's augmented queries, lets [MASK] expansion rows attend to the real tokens only.

It is the same computation as the stock forward, in the model's own dtype: float64 results agree
with it to 1e-10 and float32 to about 1e-6 (summation order differs), which
tests/test_performance_paths.py checks. A sequence's result depends on that sequence alone
(tests/test_batch_invariance.py). Anything it does not recognise (another architecture, relative
positions, a decoder) makes :func:`build_packed_encoder` return None and the caller keeps the
stock forward.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from .attention import AttentionShape, attend, cpu_attention_dtype
from .kernels import ACTIVATIONS, Linears, bucket_rows

__all__ = [
    "PACKED_MIN_TOKENS", "PackedBatch", "PackedEncoder", "TokenStates", "build_packed_classifier",
    "build_packed_encoder", "classification_head", "pack", "unpack", "use_packed",
]

logger = logging.getLogger("engine")

# Encoders whose layer layout this module reproduces: embeddings (word + token type + absolute
# position, LayerNorm), then post-LayerNorm blocks of self-attention and a GELU feed-forward.
_SUPPORTED_ENCODERS = {"BertModel", "RobertaModel", "XLMRobertaModel", "CamembertModel"}
# Position ids counted from padding_idx + 1 (fairseq), not from 0.
_FAIRSEQ_POSITIONS = {"RobertaModel", "XLMRobertaModel", "CamembertModel"}

# Calls with fewer real tokens than this keep the stock padded forward. 1: every call takes the
# packed forward where the model has one. A pair must score the same alone and in a 100-pair
# call (batch invariance), so there is one path whatever the call's size; the price is that a
# small call no longer matches sentence-transformers bit for bit, only to ~1e-7 (float32, real
# MiniLM), well inside the 1e-5 contract. Tests set it high to reach the stock forward.
PACKED_MIN_TOKENS = 1


def use_packed(encoder: object | None, lengths: Sequence[int]) -> bool:
    """Whether a call with these sequence lengths takes the packed forward."""
    return (
        encoder is not None and bool(lengths) and min(lengths) > 0
        and sum(lengths) >= PACKED_MIN_TOKENS
    )


@dataclass(frozen=True, kw_only=True)
class PackedBatch:
    """Sequences laid end to end: ``ids`` [T], ``type_ids`` [T] or None, per-sequence lengths.

    ``attend``: per sequence, how many leading tokens the others attend to (None: all of them;
    ColBERT's [MASK] query expansion is seen by nobody but still gets an output row).
    """

    ids: torch.Tensor
    type_ids: torch.Tensor | None
    lengths: tuple[int, ...]
    attend: tuple[int, ...] | None = None

    @property
    def spans(self) -> list[tuple[int, int]]:
        out, at = [], 0
        for n in self.lengths:
            out.append((at, at + n))
            at += n
        return out

    @property
    def starts(self) -> list[int]:
        return [a for a, _ in self.spans]


def pack(
    ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None = None,
    attend: Sequence[int] | None = None,
) -> PackedBatch:
    """Concatenate id lists (and their token type ids) into one flat batch. Empty lists refused."""
    lengths = tuple(len(s) for s in ids)
    if not lengths or min(lengths) < 1:
        raise ValueError("pack() needs at least one sequence and no empty sequence.")
    flat = torch.tensor([t for seq in ids for t in seq], dtype=torch.long)  # [T]
    types = None
    if type_ids is not None:
        types = torch.tensor([t for seq in type_ids for t in seq], dtype=torch.long)  # [T]
    return PackedBatch(ids=flat, type_ids=types, lengths=lengths,
                       attend=None if attend is None else tuple(attend))


@dataclass(frozen=True)
class TokenStates:
    """Last hidden states of a batch, packed: ``hidden`` [T, H], sequence i in its own span."""

    hidden: torch.Tensor
    lengths: tuple[int, ...]

    @property
    def spans(self) -> list[tuple[int, int]]:
        return PackedBatch(ids=torch.empty(0), type_ids=None, lengths=self.lengths).spans

    @classmethod
    def from_padded(cls, hidden: torch.Tensor, mask: torch.Tensor) -> TokenStates:
        """Right-padded [B, L, H] under ``mask`` [B, L] → packed (the stock forward's output)."""
        lengths = tuple(int(n) for n in mask.sum(dim=1).tolist())
        return cls(hidden[mask.bool()], lengths)  # [T, H]: row-major order of the mask


def unpack(hidden: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed states [T, H] → right-padded [B, L, H] (zeros in padding) and mask [B, L] (int64)."""
    batch, width = len(lengths), max(lengths)
    lens = torch.as_tensor(list(lengths), device=hidden.device)  # [B]
    mask = (torch.arange(width, device=hidden.device)[None, :] < lens[:, None]).long()  # [B, L]
    out = hidden.new_zeros((batch, width, hidden.shape[-1]))  # [B, L, H]
    out[mask.bool()] = hidden[: int(lens.sum())]  # row-major order of the mask is packed order
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


class PackedEncoder:
    """The padding-free forward of one loaded BERT-family encoder (shares its weights).

    Call it with a :class:`PackedBatch`; it returns the last hidden states [T, H] in packed
    order, or with ``cls_only=True`` only each sequence's first-token state [B, H].
    """

    def __init__(self, encoder: Any, *, activation: str, device: torch.device | None = None
                 ) -> None:
        config = encoder.config
        emb = encoder.embeddings
        self.word = emb.word_embeddings.weight  # [V, H]
        self.position = emb.position_embeddings.weight  # [P, H]
        self.token_type = emb.token_type_embeddings.weight  # [2, H] (BERT) or [1, H]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias, float(emb.LayerNorm.eps))
        self.fairseq_pad = (
            int(emb.padding_idx) if type(encoder).__name__ in _FAIRSEQ_POSITIONS else None
        )
        self.hidden = int(config.hidden_size)
        heads = int(config.num_attention_heads)
        head_dim = self.hidden // heads
        self.shape = AttentionShape(heads=heads, kv_heads=heads, head_dim=head_dim,
                                    scale=head_dim**-0.5)  # HF's scale
        self.dtype = self.word.dtype
        self.device = self.word.device  # where the tensors live
        # The device the kernels are chosen for (the one asked for; CPU-only kernels never
        # run on a GPU, and tests fake one with CPU tensors).
        kernels_for = device or self.device
        self.activation = activation
        self.linear = Linears(kernels_for, self.dtype)
        self.work = (cpu_attention_dtype(self.dtype) if kernels_for.type == "cpu"
                     else self.dtype)
        self.layers = [self._layer(block) for block in encoder.encoder.layer]

    @property
    def fused(self) -> bool:
        return self.linear.fused

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
        ids, types, positions = (t.to(self.device) for t in (ids, types, positions))
        x = F.embedding(ids, self.word) + F.embedding(types, self.token_type)  # [rows, H]
        x = x + F.embedding(positions, self.position)
        w, b, eps = self.emb_ln
        return F.layer_norm(x, (self.hidden,), w, b, eps)

    def __call__(self, batch: PackedBatch, *, cls_only: bool = False) -> torch.Tensor:
        with torch.inference_mode():
            return self._forward(batch, cls_only=cls_only)

    def _forward(self, batch: PackedBatch, *, cls_only: bool) -> torch.Tensor:
        h, lin = self.hidden, self.linear
        spans = batch.spans
        kv_spans = spans if batch.attend is None else [
            (a, a + n) for (a, _), n in zip(spans, batch.attend, strict=True)
        ]
        total = sum(batch.lengths)
        # Filler rows (bucket_rows) bound the number of distinct kernel shapes; they never enter
        # attention, so real rows are unaffected.
        x = self.embed(batch, bucket_rows(total))  # [rows, H]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if cls_only and i == last:
                # Only [CLS] is read: keys/values need every token, everything else one row each.
                first = torch.as_tensor([a for a, _ in spans], device=self.device)  # [B]
                kv = lin(x, layer.qkv_w[h:], layer.qkv_b[h:])  # [rows, 2H]
                x = x.index_select(0, first)  # [B, H]
                q = lin(x, layer.qkv_w[:h], layer.qkv_b[:h])  # [B, H]
                q_spans = [(j, j + 1) for j in range(len(spans))]
                ctx = attend(q, kv[:, :h], kv[:, h:], q_spans, kv_spans, self.shape,
                             work=self.work)  # [B, H]
            else:
                qkv = lin(x, layer.qkv_w, layer.qkv_b)  # [rows, 3H]
                ctx = attend(qkv[:, :h], qkv[:, h : 2 * h], qkv[:, 2 * h :], spans, kv_spans,
                             self.shape, work=self.work)  # [rows, H]
            w, b, eps = layer.ln1
            x = F.layer_norm(lin.add(ctx, layer.out_w, layer.out_b, x), (h,), w, b, eps)
            inner = lin(x, layer.ff_in_w, layer.ff_in_b, self.activation)  # [rows, I]
            w, b, eps = layer.ln2
            x = F.layer_norm(lin.add(inner, layer.ff_out_w, layer.ff_out_b, x), (h,), w, b, eps)
        return x if cls_only else x[:total]  # [B, H] or [T, H]


def build_packed_encoder(encoder: Any, device: torch.device) -> PackedEncoder | None:
    """A :class:`PackedEncoder` for ``encoder`` (an HF base model), or None to keep the stock one.

    None for anything but a BERT-family encoder with absolute positions, no decoder or
    cross-attention, and an activation this module knows, or on a device other than CPU/CUDA.
    """
    if device.type not in ("cpu", "cuda") or type(encoder).__name__ not in _SUPPORTED_ENCODERS:
        return None
    config = encoder.config
    activation = getattr(config, "hidden_act", None)
    if (
        getattr(config, "position_embedding_type", "absolute") not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or getattr(config, "add_cross_attention", False)
        or not isinstance(activation, str)
        or activation not in ACTIVATIONS
        or config.hidden_size % config.num_attention_heads
    ):
        return None
    try:
        return PackedEncoder(encoder, activation=activation, device=device)
    except AttributeError as exc:
        # A subclass that renamed a submodule: the stock forward still works, just slower.
        logger.debug("Packed forward not available for %s: %s", type(encoder).__name__, exc)
        return None


def classification_head(model: Any, linears: Linears | None = None) -> Any:
    """The head of a ``*ForSequenceClassification`` as a function of [CLS] states [B, H] → logits.

    None where the head reads more than the first token or the class is not one we know. The
    head's linear layers run through ``linears`` (batch invariant rows); its maths is the
    checkpoint's: BERT's pooler (dense + tanh) then the classifier, RoBERTa's dense + tanh then
    out_proj (dropout is off at inference).
    """
    name = type(model).__name__
    if linears is None:
        weight = next(model.parameters())
        linears = Linears(weight.device, weight.dtype)
    lin = linears
    if name == "BertForSequenceClassification" and getattr(model.bert, "pooler", None) is not None:
        pooler, clf = model.bert.pooler.dense, model.classifier

        def bert_head(cls: torch.Tensor) -> torch.Tensor:
            pooled = lin(cls, pooler.weight, pooler.bias, "tanh")  # [B, H]
            return lin(pooled, clf.weight, clf.bias)  # [B, C]

        return bert_head
    if name in {
        "RobertaForSequenceClassification", "XLMRobertaForSequenceClassification",
        "CamembertForSequenceClassification",
    }:
        dense, out = model.classifier.dense, model.classifier.out_proj

        def roberta_head(cls: torch.Tensor) -> torch.Tensor:
            hidden = lin(cls, dense.weight, dense.bias, "tanh")  # [B, H]
            return lin(hidden, out.weight, out.bias)  # [B, C]

        return roberta_head
    return None


def build_packed_classifier(model: Any, device: torch.device) -> Any:
    """(PackedEncoder, head) for a supported ``*ForSequenceClassification``, or None."""
    base = getattr(model, "base_model", None)
    encoder = None if base is None else build_packed_encoder(base, device)
    if encoder is None:
        return None
    head = classification_head(model, encoder.linear)
    return None if head is None else (encoder, head)
