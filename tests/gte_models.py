"""A tiny random GteNew (mGTE-TRM) reranker saved as Alibaba-NLP/gte-multilingual-reranker-base
ships: ``NewForSequenceClassification`` config (model_type ``new``, auto_map into the hub's
``new-impl`` code, which is never run), the published parameter names, and an XLM-R tokenizer.

Also the reference forward, written from the published modelling code's structure (new-impl
``NewModel`` / ``NewForSequenceClassification``), in plain tensor operations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from tests.models import xlmr_tokenizer

HIDDEN, HEADS, LAYERS, INTER = 32, 4, 2, 40


def gte_config(tok_len: int, *, rope_scaling: dict | None, type_vocab_size: int = 1,
               hidden: int = HIDDEN, heads: int = HEADS) -> dict:
    return {
        "architectures": ["NewForSequenceClassification"],
        "auto_map": {
            "AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
            "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel",
            "AutoModelForSequenceClassification":
                "Alibaba-NLP/new-impl--modeling.NewForSequenceClassification",
        },
        "model_type": "new",
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout": 0.0,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "layer_norm_eps": 1e-12,
        "layer_norm_type": "layer_norm",
        "logn_attention_clip1": False,
        "logn_attention_scale": False,
        "max_position_embeddings": 512,
        "num_attention_heads": heads,
        "num_hidden_layers": LAYERS,
        "pack_qkv": True,
        "pad_token_id": 1,
        "position_embedding_type": "rope",
        "rope_scaling": rope_scaling,
        "rope_theta": 20000,
        "torch_dtype": "float32",
        "type_vocab_size": type_vocab_size,
        "unpad_inputs": False,
        "use_memory_efficient_attention": False,
        "vocab_size": tok_len,
    }


def gte_state_dict(config: dict, *, seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the published names (``new.*`` and ``classifier.*``)."""
    g = torch.Generator().manual_seed(seed)
    h, i = config["hidden_size"], config["intermediate_size"]

    def w(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "new.embeddings.word_embeddings.weight": w(config["vocab_size"], h, scale=1.0),
        "new.embeddings.LayerNorm.weight": 1 + w(h, scale=0.1),
        "new.embeddings.LayerNorm.bias": w(h, scale=0.1),
        "new.pooler.dense.weight": w(h, h),
        "new.pooler.dense.bias": w(h, scale=0.1),
        "classifier.weight": w(1, h, scale=2.0),
        "classifier.bias": w(1, scale=0.1),
    }
    if config["type_vocab_size"] > 0:
        sd["new.embeddings.token_type_embeddings.weight"] = w(config["type_vocab_size"], h)
    for n in range(config["num_hidden_layers"]):
        p = f"new.encoder.layer.{n}."
        sd.update({
            p + "attention.qkv_proj.weight": w(3 * h, h),
            p + "attention.qkv_proj.bias": w(3 * h, scale=0.1),
            p + "attention.o_proj.weight": w(h, h),
            p + "attention.o_proj.bias": w(h, scale=0.1),
            p + "attn_ln.weight": 1 + w(h, scale=0.1),
            p + "attn_ln.bias": w(h, scale=0.1),
            p + "mlp.up_gate_proj.weight": w(2 * i, h),
            p + "mlp.down_proj.weight": w(h, i),
            p + "mlp.down_proj.bias": w(h, scale=0.1),
            p + "mlp_ln.weight": 1 + w(h, scale=0.1),
            p + "mlp_ln.bias": w(h, scale=0.1),
        })
    return sd


def build_gte_new(folder: Path, *, seed: int = 7, rope_scaling: dict | None = None,
                  type_vocab_size: int = 1, hidden: int = HIDDEN, heads: int = HEADS) -> Path:
    """The checkpoint folder: config.json, model.safetensors, tokenizer files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tok = xlmr_tokenizer()
    tok.save_pretrained(folder)
    # As published: the tokenizer class is named, so no config class is needed to load it.
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["tokenizer_class"] = "XLMRobertaTokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    config = gte_config(len(tok), rope_scaling=rope_scaling, type_vocab_size=type_vocab_size,
                        hidden=hidden, heads=heads)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(gte_state_dict(config, seed=seed), str(folder / "model.safetensors"))
    return folder


# -- the reference forward ------------------------------------------------------------------------
def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _rope_cache(config: dict, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """new-impl's RotaryEmbedding / NTKScalingRotaryEmbedding cos and sin caches [P, d]."""
    dim = config["hidden_size"] // config["num_attention_heads"]
    base = float(config["rope_theta"])
    scaling = config.get("rope_scaling")
    max_pos = config["max_position_embeddings"]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    cached = max(max_pos, seq_len)
    if scaling is not None:  # NTKScalingRotaryEmbedding: cache for max_pos * factor
        factor = float(scaling["factor"])
        cached = int(max_pos * factor)
        mixed_b = scaling.get("mixed_b")
        if cached > max_pos:
            base2 = base * (factor if mixed_b is None else 1)
            inv_freq = 1.0 / (base2 ** (torch.arange(0, dim, 2).float() / dim))
            if mixed_b is None:
                inv_freq = inv_freq / factor ** (2 / dim)
            else:
                a = torch.tensor(factor).log() / (dim / 2) ** mixed_b
                lam = (a * torch.arange(1, dim // 2 + 1).float() ** mixed_b).exp()
                inv_freq = inv_freq / lam
    t = torch.arange(cached, dtype=torch.float32)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def reference_logit(folder: Path, ids: list[int]) -> float:
    """One unpadded sequence through the published architecture: the classifier's logit."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    sd = load_file(str(folder / "model.safetensors"))
    h, heads = config["hidden_size"], config["num_attention_heads"]
    d = h // heads
    eps = config["layer_norm_eps"]
    x_ids = torch.tensor(ids)
    n = len(ids)
    x = sd["new.embeddings.word_embeddings.weight"][x_ids]
    if config["type_vocab_size"] > 0:
        x = x + sd["new.embeddings.token_type_embeddings.weight"][torch.zeros(n, dtype=torch.long)]
    x = _layer_norm(x, sd["new.embeddings.LayerNorm.weight"], sd["new.embeddings.LayerNorm.bias"],
                    eps)
    cos, sin = _rope_cache(config, n)
    cos, sin = cos[:n][:, None, :], sin[:n][:, None, :]  # [n, 1, d]

    def rot(t: torch.Tensor) -> torch.Tensor:
        return torch.cat((-t[..., d // 2:], t[..., : d // 2]), dim=-1)

    for layer in range(config["num_hidden_layers"]):
        p = f"new.encoder.layer.{layer}."
        qkv = x @ sd[p + "attention.qkv_proj.weight"].T + sd[p + "attention.qkv_proj.bias"]
        q, k, v = qkv.chunk(3, dim=-1)
        q, k, v = (t.view(n, heads, d) for t in (q, k, v))
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
        att = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(n, h)
        att = att @ sd[p + "attention.o_proj.weight"].T + sd[p + "attention.o_proj.bias"]
        x = _layer_norm(x + att, sd[p + "attn_ln.weight"], sd[p + "attn_ln.bias"], eps)
        up, gate = (x @ sd[p + "mlp.up_gate_proj.weight"].T).split(config["intermediate_size"], -1)
        mlp = torch.nn.functional.gelu(gate) * up
        mlp = mlp @ sd[p + "mlp.down_proj.weight"].T + sd[p + "mlp.down_proj.bias"]
        x = _layer_norm(x + mlp, sd[p + "mlp_ln.weight"], sd[p + "mlp_ln.bias"], eps)
    pooled = torch.tanh(x[0] @ sd["new.pooler.dense.weight"].T + sd["new.pooler.dense.bias"])
    return float(pooled @ sd["classifier.weight"][0] + sd["classifier.bias"][0])
