"""GteNew (mGTE-TRM, e.g. Alibaba-NLP/gte-multilingual-reranker-base), natively, no remote code.

The published checkpoints are ``NewForSequenceClassification`` (model_type ``new``) with their
modelling code on the hub (Alibaba-NLP/new-impl); vLLM serves them as
``GteNewForSequenceClassification`` (``--hf-overrides '{"architectures":
["GteNewForSequenceClassification"]}'``). This module is that architecture in plain torch,
with the published parameter names, so the weights load as they are:

- embeddings: word (+ token type when ``type_vocab_size`` > 0), then LayerNorm; no absolute
  positions: rotary embeddings (NeoX layout, ``rope_theta``, optional fixed/mixed NTK scaling)
  are applied to queries and keys in every layer;
- post-LayerNorm blocks: packed ``qkv_proj`` → attention → ``o_proj`` → ``attn_ln``; a gated
  feed-forward ``up_gate_proj`` (no bias; first half "up", second half "gate") →
  ``gelu(gate) * up`` → ``down_proj`` → ``mlp_ln``;
- head: the BERT pooler (first token → ``pooler.dense`` → tanh) → ``classifier``.

The cross-encoder backend serves it unchanged: only the loading differs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ..errors import ModelLoadError, UnsupportedScoreType
from .checkpoint import CheckpointInfo
from .cross_encoder import CrossEncoderBackend
from .weights import load_tokenizer, read_weights

__all__ = [
    "GTE_ARCHITECTURES", "GteNewBackend", "GteNewConfig", "GteNewForSequenceClassification",
    "is_gte_new", "rotary_inv_freq",
]

GTE_ARCHITECTURES = frozenset({"NewForSequenceClassification", "GteNewForSequenceClassification"})


def is_gte_new(info: CheckpointInfo) -> bool:
    """A GteNew cross-encoder: model_type ``new`` with one of the two architecture names."""
    return info.model_type == "new" and bool(GTE_ARCHITECTURES & set(info.architectures))


@dataclass(frozen=True, kw_only=True)
class GteNewConfig:
    """The fields of the published ``NewConfig`` this forward reads (config.json, no code)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    type_vocab_size: int
    layer_norm_eps: float
    max_position_embeddings: int
    rope_theta: float
    rope_scaling: Mapping[str, Any] | None
    num_labels: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str) -> GteNewConfig:
        """Read and check config.json; refuse the options this forward does not reproduce."""
        refuse = {
            "position_embedding_type": ("rope", raw.get("position_embedding_type", "rope")),
            "layer_norm_type": ("layer_norm", raw.get("layer_norm_type", "layer_norm")),
            "hidden_act": ("gelu", raw.get("hidden_act", "gelu")),
            "pack_qkv": (True, raw.get("pack_qkv", True)),
            "logn_attention_scale": (False, bool(raw.get("logn_attention_scale", False))),
        }
        for name, (want, got) in refuse.items():
            if got != want:
                raise UnsupportedScoreType(
                    f"{where}: GteNew with {name}={got!r} is not supported (only {want!r}, as "
                    "the published mGTE checkpoints and vLLM's GteNewModel use)."
                )
        scaling = raw.get("rope_scaling")
        if scaling is not None and scaling.get("type", scaling.get("rope_type")) != "ntk":
            raise UnsupportedScoreType(
                f"{where}: rope_scaling {dict(scaling)} is not supported; GteNew checkpoints use "
                'none or {"type": "ntk", "factor": ...}.'
            )
        id2label = raw.get("id2label")
        # transformers' PretrainedConfig: num_labels is len(id2label), 2 when neither is given.
        num_labels = len(id2label) if id2label else int(raw.get("num_labels", 2))
        try:
            config = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                type_vocab_size=int(raw.get("type_vocab_size", 0)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
                rope_theta=float(raw.get("rope_theta", 10000.0)),
                rope_scaling=scaling,
                num_labels=num_labels,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{where}: config.json lacks or mangles {exc}.") from exc
        if config.hidden_size % config.num_attention_heads:
            raise ModelLoadError(f"{where}: hidden_size is not a multiple of the head count.")
        rotary_dim = raw.get("rotary_emb_dim", config.head_dim)
        if rotary_dim != config.head_dim:
            raise UnsupportedScoreType(
                f"{where}: GteNew with rotary_emb_dim={rotary_dim} (partial rotary) is not "
                f"supported; only the full head ({config.head_dim}), as the published mGTE "
                "checkpoints use."
            )
        return config


def rotary_inv_freq(
    dim: int, base: float, scaling: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """Inverse frequencies [dim/2] of GteNew's rotary embedding (float32).

    Plain: ``1 / base^(2i/dim)``. Fixed NTK (``{"type": "ntk", "factor": s}``, the published
    checkpoints): ``1 / (base·s)^(2i/dim) / s^(2/dim)``. Mixed NTK (``mixed_b``): the plain
    frequencies divided by ``exp(a·m^b)``, m = 1..dim/2, a = ln(s) / (dim/2)^b (kexue.fm 9706).

    The scaling applies whatever the factor, as in vLLM's NTKScalingRotaryEmbedding (new-impl
    scales only when factor > 1; every published checkpoint has factor 8).
    """
    exponents = torch.arange(0, dim, 2, dtype=torch.float32) / dim  # [dim/2]
    if scaling is None:
        return 1.0 / (base**exponents)
    factor = float(scaling["factor"])
    mixed_b = scaling.get("mixed_b")
    if mixed_b is None:
        return 1.0 / ((base * factor) ** exponents) / factor ** (2 / dim)
    a = math.log(factor) / (dim / 2) ** float(mixed_b)
    lam = torch.exp(a * torch.arange(1, dim // 2 + 1, dtype=torch.float32) ** float(mixed_b))
    return 1.0 / (base**exponents) / lam


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Embeddings(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = (
            torch.nn.Embedding(config.type_vocab_size, config.hidden_size)
            if config.type_vocab_size > 0 else None
        )
        self.LayerNorm = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # [B, L, H]
        if self.token_type_embeddings is not None:
            if token_type_ids is None or self.token_type_embeddings.num_embeddings < 2:
                # new-impl zeroes the types when the table has one row (XLM-R tokenizers)
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)  # type: ignore[no-any-return]


class _Attention(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv_proj = torch.nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.o_proj = torch.nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv_proj(x).view(b, n, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, h, L, d] each
        q = q * cos + _rotate_half(q) * sin  # cos/sin [1, 1, L, d]
        k = k * cos + _rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, h, L, d]
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))  # type: ignore[no-any-return]


class _GatedMLP(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.intermediate = config.intermediate_size
        self.up_gate_proj = torch.nn.Linear(
            config.hidden_size, 2 * config.intermediate_size, bias=False
        )
        self.down_proj = torch.nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.up_gate_proj(x).split(self.intermediate, dim=-1)  # [B, L, I] each
        return self.down_proj(F.gelu(gate) * up)  # type: ignore[no-any-return]


class _Layer(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.mlp = _GatedMLP(config)
        self.attn_ln = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp_ln = torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        x = self.attn_ln(x + self.attention(x, bias, cos, sin))
        return self.mlp_ln(x + self.mlp(x))  # type: ignore[no-any-return]


class _Encoder(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.layer = torch.nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))


class _Pooler(torch.nn.Module):
    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)


class GteNewModel(torch.nn.Module):
    """The encoder (``new.*`` in the published weights): token states [B, L, H]."""

    inv_freq: torch.Tensor

    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)
        self.register_buffer(
            "inv_freq", rotary_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling),
            persistent=False,
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)  # [B, L, H]
        # Right padding: every row's real tokens sit at positions 0..n-1.
        t = torch.arange(input_ids.shape[1], device=x.device, dtype=torch.float32)  # [L]
        freqs = torch.outer(t, self.inv_freq)  # [L, d/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [L, d]
        cos = emb.cos().to(x.dtype)[None, None]  # [1, 1, L, d]
        sin = emb.sin().to(x.dtype)[None, None]
        blocked = (attention_mask == 0)[:, None, None, :]  # [B, 1, 1, L]
        bias = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(blocked, torch.finfo(x.dtype).min)  # [B, 1, 1, L]
        for layer in self.encoder.layer:
            x = layer(x, bias, cos, sin)
        return x


class GteNewForSequenceClassification(torch.nn.Module):
    """``new`` encoder → pooler (first token, dense, tanh) → ``classifier``; returns ``.logits``."""

    def __init__(self, config: GteNewConfig) -> None:
        super().__init__()
        self.config = config
        self.new = GteNewModel(config)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> SimpleNamespace:
        hidden = self.new(input_ids, attention_mask, token_type_ids)  # [B, L, H]
        pooled = torch.tanh(self.new.pooler.dense(hidden[:, 0]))  # [B, H]
        return SimpleNamespace(logits=self.classifier(pooled))  # [B, C]


def load_gte_new(
    info: CheckpointInfo, *, dtype: torch.dtype, device: torch.device
) -> GteNewForSequenceClassification:
    """Build the model from config.json and load the published weights, strictly."""
    config = GteNewConfig.from_dict(info.config, where=str(info.path))
    model = GteNewForSequenceClassification(config)
    state = read_weights(info.path)
    # Buffers some exports carry; they are recomputed here.
    state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "inv_freq"))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"The weights in {info.path} don't match a GteNew (NewForSequenceClassification) "
            f"of its config.json: {str(exc)[:400]}. Loading would use random values; check "
            "that the checkpoint is complete and unmodified."
        ) from exc
    return model.to(device=device, dtype=dtype).eval()


class GteNewBackend(CrossEncoderBackend):
    """The cross-encoder path over the native GteNew model (the XLM-R pair encoding, CLS pooler).

    Only loading differs from :class:`CrossEncoderBackend`: no ``trust_remote_code`` ever runs,
    and there is no padding-free forward (the stock padded one is used).
    """

    def _load(self) -> tuple[torch.nn.Module, Any, Any]:
        from transformers import PretrainedConfig

        # config.json is a NewConfig that only the hub's code can parse; the tokenizer is
        # named in tokenizer_config.json, so hand AutoTokenizer a neutral config instead.
        tokenizer = load_tokenizer(
            self.info.path, trust_remote_code=False, config=PretrainedConfig()
        )
        return load_gte_new(self.info, dtype=self.dtype, device=self.device), tokenizer, None
