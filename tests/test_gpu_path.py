"""The CUDA path, as far as a CPU-only machine can check it (bench/gpu.py measures it on a GPU).

- device and dtype choice for "cuda" (torch.cuda faked);
- the padding-free forwards built for a CUDA device never ask for a CPU-only kernel (oneDNN's
  fused linear is made to raise) and still match the stock forward, run here on CPU tensors;
- the varlen attention plumbing (packed rows → cumulative offsets → back), with torch's flash
  ``varlen_attn`` replaced by a per-sequence reference, since it only runs on a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.local import attention
from engine.local.devices import resolve_device, resolve_dtype
from engine.local.kernels import Linears
from engine.local.packed import build_packed_classifier, build_packed_encoder, pack
from engine.local.packed_decoder import build_packed_decoder
from tests.conftest import DOCUMENTS, QUERIES
from tests.llm_models import build_causal_lm

CUDA = torch.device("cuda")


@pytest.fixture
def no_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call of torch's CPU-only fused linear kernels fails the test."""

    class Refuse:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a CPU-only oneDNN kernel was called on the GPU path")

        binary = property(lambda self: self)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", Refuse())


def test_cuda_device_and_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", CUDA) == torch.bfloat16
    assert resolve_dtype("fast", CUDA) == torch.bfloat16
    assert resolve_dtype("float32", CUDA) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", CUDA) == torch.float16


def test_linears_for_cuda_use_no_onednn(no_onednn: None) -> None:
    lin = Linears(CUDA, torch.float32)
    assert not lin.fused
    x, w, b = torch.randn(3, 5), torch.randn(4, 5), torch.randn(4)
    assert torch.allclose(lin(x, w, b, "silu"), F.silu(F.linear(x, w, b)))
    assert torch.allclose(lin.add(x, w, b, torch.ones(3, 4)), F.linear(x, w, b) + 1)
    assert torch.allclose(lin.mul(x, w, b, torch.full((3, 4), 2.0)), F.linear(x, w, b) * 2)


def test_packed_classifier_for_cuda_matches_stock(bert_ce: Path, no_onednn: None) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_ce))
    model = AutoModelForSequenceClassification.from_pretrained(str(bert_ce)).eval()
    built = build_packed_classifier(model, CUDA)  # kernels for CUDA, tensors on CPU
    assert built is not None
    encoder, head = built
    assert not encoder.fused and encoder.work == torch.float32
    queries = [QUERIES[i % 2] for i in range(len(DOCUMENTS))]
    enc = tok(queries, DOCUMENTS)
    with torch.no_grad():
        ours = head(encoder(pack(enc["input_ids"], enc["token_type_ids"]), cls_only=True))
        ref = torch.stack([model(**tok([q], [d], return_tensors="pt")).logits[0]
                           for q, d in zip(queries, DOCUMENTS, strict=True)])
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)


def test_packed_encoder_and_decoder_for_cuda_build(
    bert_encoder: Path, tmp_path: Path, no_onednn: None
) -> None:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(bert_encoder)).eval()
    assert build_packed_encoder(model, CUDA) is not None
    lm = build_causal_lm(tmp_path / "qwen3", "qwen3")
    decoder_model = AutoModel.from_pretrained(str(lm)).eval()
    decoder = build_packed_decoder(decoder_model, CUDA, causal=True)
    assert decoder is not None and not decoder.linear.fused
    ids = AutoTokenizer.from_pretrained(str(lm))(DOCUMENTS[:3])["input_ids"]
    with torch.no_grad():
        ref = torch.stack([decoder_model(input_ids=torch.tensor([s])).last_hidden_state[0, -1]
                           for s in ids])
    assert torch.allclose(decoder(ids, pooling="lasttoken"), ref, atol=1e-5, rtol=0)


def _reference_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor,
                      cu_k: torch.Tensor, max_q: int, max_k: int, *, scale: float,
                      window_size: tuple[int, int], enable_gqa: bool) -> torch.Tensor:
    """What flash varlen_attn computes ([T, H, d] rows, cumulative offsets), on CPU."""
    out = []
    for i in range(len(cu_q) - 1):
        qa, qb, ka, kb = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        o = F.scaled_dot_product_attention(
            q[qa:qb].transpose(0, 1)[None], k[ka:kb].transpose(0, 1)[None],
            v[ka:kb].transpose(0, 1)[None], scale=scale, is_causal=window_size == (-1, 0),
            enable_gqa=enable_gqa)
        out.append(o[0].transpose(0, 1))
    return torch.cat(out)


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_attention_plumbing(monkeypatch: pytest.MonkeyPatch, causal: bool) -> None:
    import torch.nn.attention.varlen as varlen

    monkeypatch.setattr(varlen, "varlen_attn", _reference_varlen)
    torch.manual_seed(0)
    shape = attention.AttentionShape(heads=4, kv_heads=2, head_dim=8, scale=0.3, causal=causal)
    spans = [(0, 5), (5, 6), (6, 13)]
    q, k, v = torch.randn(16, 32), torch.randn(16, 16), torch.randn(16, 16)  # 3 filler rows
    got = attention._varlen(q, k, v, spans, spans, shape, 16)
    want = attention._per_sequence(q, k, v, spans, spans, shape, torch.float32, 16)
    assert torch.allclose(got, want, atol=1e-6)
    assert not got[13:].any()
    # One query row per sequence (the [CLS] / last-token layer) against all of its keys.
    rows = [(0, 1), (1, 2), (2, 3)]
    got = attention._varlen(q[[4, 5, 12]], k, v, rows, spans, shape, 3)
    want = attention._per_sequence(q[[4, 5, 12]], k, v, rows, spans, shape, torch.float32, 3)
    assert torch.allclose(got, want, atol=1e-6)


def test_cpu_attention_dtype_follows_the_cpu() -> None:
    amx = frozenset({"amx_bf16", "avx512_bf16"})
    zen4 = frozenset({"avx512_bf16"})
    assert attention.cpu_attention_dtype(torch.float32, amx) == torch.float32
    assert attention.cpu_attention_dtype(torch.bfloat16, amx) == torch.bfloat16
    assert attention.cpu_attention_dtype(torch.bfloat16, zen4) == torch.float32


def test_the_gpu_benchmark_says_why_it_cannot_run_here(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run python -m bench.gpu instead")
    from bench import gpu

    assert gpu.main([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
