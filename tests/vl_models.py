"""Tiny random multimodal rerankers, saved as the originals ship.

- Qwen3-VL-Reranker: a ``Qwen3VLForConditionalGeneration`` checkpoint (served with vLLM's
  hf_overrides ``Qwen3VLForSequenceClassification`` + ``classifier_from_token ["no", "yes"]`` +
  ``is_original_qwen3_reranker``), Qwen3-VL's image processor config (patch 16, merge 2).
- jina-reranker-m0: ``JinaVLForRanking`` (a Qwen2-VL with a ``score`` MLP) in its published
  layout: the pre-4.52 transformers names (``model.layers.*``, ``visual.*``), ``score.0`` /
  ``score.2``, model_type ``qwen2_vl`` with an auto_map that is never run, Qwen2-VL's image
  processor config (patch 14, merge 2).

Both get the qwen byte-level BPE tokenizer of tests/llm_models.py plus the vision specials, and
small pixel bounds so an image is a handful of tokens. Also test images (PNG data URLs).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import torch

from tests.llm_models import build_tokenizer

VISION_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def vl_tokenizer() -> Any:
    tok = build_tokenizer("qwen")
    tok.add_special_tokens({"additional_special_tokens": VISION_SPECIALS})
    return tok


def _ids(tok: Any) -> dict[str, int]:
    return {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
    }


def _spread(model: torch.nn.Module, scale: float = 3.0) -> None:
    """Tiny random vision towers give near-constant features; spread them so images matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "visual" in name and p.dim() == 2:
                p.mul_(scale)


def build_qwen3_vl(folder: Path, *, seed: int = 31, wide: bool = False) -> Path:
    """``wide``: text hidden 64 and head_dim 32, what vLLM's CPU attention runs (its reference)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    tok = vl_tokenizer()
    hidden = 64 if wide else 32
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 2 if wide else 4,
            "num_key_value_heads": 1 if wide else 2, "head_dim": 32 if wide else 8,
            "max_position_embeddings": 1024, "initializer_range": 0.5,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                "mrope_section": [6, 5, 5] if wide else [2, 1, 1],
                                "mrope_interleaved": True},
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 37, "num_heads": 2,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "out_hidden_size": hidden, "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1], "in_channels": 3, "initializer_range": 0.5,
        },
        tie_word_embeddings=False,
        **_ids(tok),
    )
    model = Qwen3VLForConditionalGeneration(config).eval()
    _spread(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.15)  # z_yes − z_no of a few units: scores off the rails
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "size": {"shortest_edge": 32 * 32, "longest_edge": 96 * 96},
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "do_resize": True,
        "do_convert_rgb": True,
    }, indent=2))
    return folder


def build_jina_vl(folder: Path, *, seed: int = 41, wide: bool = False) -> Path:
    """jina-reranker-m0's layout from a tiny Qwen2-VL and a random score MLP (``wide``: hidden
    64, head_dim 32, for vLLM's CPU build)."""
    from safetensors.torch import save_file
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    tok = vl_tokenizer()
    hidden = 64 if wide else 32
    text = {
        "vocab_size": len(tok), "hidden_size": hidden, "intermediate_size": 37,
        "num_hidden_layers": 2, "num_attention_heads": 2 if wide else 4,
        "num_key_value_heads": 1 if wide else 2, "max_position_embeddings": 1024,
        "initializer_range": 0.5, "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6] if wide else [1, 1, 2]},
    }
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "in_channels": 3, "initializer_range": 0.5}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                           **_ids(tok))
    lm = Qwen2VLForConditionalGeneration(config).eval()
    _spread(lm)
    state = {}
    for key, value in lm.state_dict().items():
        if key.startswith("model.language_model."):
            state["model." + key[len("model.language_model."):]] = value
        elif key.startswith("model.visual."):
            state["visual." + key[len("model.visual."):]] = value
    g = torch.Generator().manual_seed(seed)
    state["score.0.weight"] = torch.randn(hidden, hidden, generator=g) * 0.3
    state["score.0.bias"] = torch.randn(hidden, generator=g) * 0.1
    state["score.2.weight"] = torch.randn(1, hidden, generator=g)
    state["score.2.bias"] = torch.tensor([2.0])  # near LOGIT_BIAS, so scores spread around 0.5
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    tok.save_pretrained(folder)
    # The published config.json is flat (pre-v5 Qwen2-VL) and names the remote class.
    flat = {"architectures": ["JinaVLForRanking"], "model_type": "qwen2_vl",
            "auto_map": {"AutoModel": "modeling.JinaVLForRanking"},
            "tie_word_embeddings": True, "torch_dtype": "float32", "vision_config": vision,
            **text, **_ids(tok)}
    (folder / "config.json").write_text(json.dumps(flat, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "min_pixels": 28 * 28, "max_pixels": 84 * 84,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "do_resize": True,
        "do_convert_rgb": True,
    }, indent=2))
    return folder


# -- images ----------------------------------------------------------------------------------
def image(seed: int, size: tuple[int, int] = (70, 50), mode: str = "RGB") -> Any:
    """A random PIL image (width, height)."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray((rng.rand(size[1], size[0], channels) * 255).astype("uint8"), mode)


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(img: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


def content(*parts: object) -> dict[str, Any]:
    """vLLM's ScoreMultiModalParam from strings (text parts) and PIL images (image_url parts)."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append({"type": "text", "text": p})
        else:
            out.append({"type": "image_url", "image_url": {"url": data_url(p)}})
    return {"content": out}
