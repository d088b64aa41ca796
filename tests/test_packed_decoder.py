"""The padding-free decoder forward of the LLM rerankers against the stock transformers forward.

Each family the LLM reranker backend serves (Llama, Qwen2, Qwen3 with its q/k norms, Gemma with
its scaled embedding and 1 + w norms, nemotron's bidirectional Llama) is run both ways on prompts
of mixed lengths: the stock forward sees each prompt alone (nothing padded, nothing masked), ours
sees them packed together. float64 must agree to 2e-6 and float32 to 1e-5 (relative to the
largest state). float64 is not closer because HF's RMSNorm itself normalises in float32 whatever
the model's dtype: one float32 rounding per norm. Any real difference (positions, rotary, GQA,
norms, the last-row-only last layer) is orders of magnitude larger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.local.packed_decoder import RMSNorm, build_packed_decoder
from tests.llm_models import build_causal_lm, build_nemotron

PROMPTS = [
    "paris is the capital and largest city of france",
    "berlin",
    "sailors got scurvy from a lack of vitamin c, yes " * 3,
    "the quick brown fox jumps over the lazy dog " * 6,
    "yes",
]
FAMILIES = ["qwen3", "qwen2", "gemma", "llama"]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packed_decoders")
    built = {f: build_causal_lm(root / f, f, seed=7 + i) for i, f in enumerate(FAMILIES)}
    built["nemotron"] = build_nemotron(root / "nemotron")
    return built


def _load(path: Path, dtype: torch.dtype, *, bidirectional: bool) -> tuple[Any, Any]:
    import json

    from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaModel

    tok = AutoTokenizer.from_pretrained(str(path))
    if bidirectional:
        raw = json.loads((path / "config.json").read_text())
        fields = {k: v for k, v in raw.items()
                  if k not in ("model_type", "auto_map", "architectures")}
        config = LlamaConfig(**fields)
        config.is_causal = False
        model = LlamaModel.from_pretrained(str(path), config=config, dtype=dtype,
                                           attn_implementation="eager")
    else:
        model = AutoModel.from_pretrained(str(path), dtype=dtype)
    return tok, model.eval()


def _reference(model: Any, ids: list[list[int]], pooling: str) -> torch.Tensor:
    """Stock forward, one unpadded prompt at a time, pooled by hand → [B, H]."""
    out = []
    with torch.no_grad():
        for seq in ids:
            hidden = model(input_ids=torch.tensor([seq])).last_hidden_state[0]  # [L, H]
            out.append(hidden.mean(dim=0) if pooling == "mean" else
                       hidden[-1] if pooling == "lasttoken" else hidden[0])
    return torch.stack(out).to(torch.promote_types(out[0].dtype, torch.float32))


@pytest.mark.parametrize("family", [*FAMILIES, "nemotron"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 2e-6), (torch.float32, 1e-5)])
def test_packed_decoder_matches_stock_forward(
    decoders: dict[str, Path], family: str, dtype: torch.dtype, tol: float
) -> None:
    bidirectional = family == "nemotron"
    tok, model = _load(decoders[family], dtype, bidirectional=bidirectional)
    decoder = build_packed_decoder(model, torch.device("cpu"), causal=not bidirectional)
    assert decoder is not None
    ids = tok(PROMPTS)["input_ids"]
    assert len({len(s) for s in ids}) > 3  # mixed lengths: packing means something
    for pooling in (("mean",) if bidirectional else ("lasttoken", "mean", "cls")):
        ref = _reference(model, ids, pooling)
        ours = decoder(ids, pooling=pooling)
        assert ref.std() > 1e-3  # rows differ, so agreement means something
        scale = ref.abs().max()
        assert (ours.double() - ref.double()).abs().max() <= tol * scale, pooling


def test_bidirectional_differs_from_causal(decoders: dict[str, Path]) -> None:
    tok, model = _load(decoders["nemotron"], torch.float64, bidirectional=True)
    ids = tok(PROMPTS)["input_ids"]
    both = build_packed_decoder(model, torch.device("cpu"), causal=False)
    assert both is not None
    causal = build_packed_decoder(model, torch.device("cpu"), causal=True)
    assert causal is not None and causal is not both
    assert (both(ids, pooling="mean") - causal(ids, pooling="mean")).abs().max() > 1e-3


def test_rms_norm_matches_hf_modules() -> None:
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    x = torch.randn(37, 64)
    for module in (LlamaRMSNorm(64, eps=1e-5), GemmaRMSNorm(64, eps=1e-6)):
        with torch.no_grad():
            module.weight.normal_()
        ours = RMSNorm.of(module)(x)
        assert torch.allclose(ours, module(x), atol=2e-6, rtol=0)  # one float32 rounding


def test_unsupported_decoders_keep_the_stock_forward() -> None:
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=99)
    dynamic = LlamaModel(LlamaConfig(rope_scaling={"rope_type": "dynamic", "factor": 2.0},
                                     **small))
    assert build_packed_decoder(dynamic, torch.device("cpu"), causal=True) is None
    sliding = Qwen2Model(Qwen2Config(use_sliding_window=True, sliding_window=8,
                                     max_window_layers=0, **small))
    assert build_packed_decoder(sliding, torch.device("cpu"), causal=True) is None
    assert build_packed_decoder(torch.nn.Linear(2, 2), torch.device("cpu"), causal=True) is None
    plain = LlamaModel(LlamaConfig(**small))
    assert build_packed_decoder(plain, torch.device("mps"), causal=True) is None
    assert build_packed_decoder(plain, torch.device("cpu"), causal=True) is not None
